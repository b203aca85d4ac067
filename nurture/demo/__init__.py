"""A seeded synthetic community for demos and tests: members, answers, activity, personas."""

from nurture.demo.generator import (
    DemoFiles,
    LibraryItem,
    generate_demo_community,
    generate_library_community,
)
from nurture.demo.personas import OPTIONS, PERSONAS, Persona

__all__ = [
    "OPTIONS",
    "PERSONAS",
    "DemoFiles",
    "LibraryItem",
    "Persona",
    "generate_demo_community",
    "generate_library_community",
]
