"""A seeded synthetic community for demos and tests: members, answers, activity, personas."""

from nurture.demo.generator import DemoFiles, generate_demo_community
from nurture.demo.personas import OPTIONS, PERSONAS, Persona

__all__ = ["OPTIONS", "PERSONAS", "DemoFiles", "Persona", "generate_demo_community"]
