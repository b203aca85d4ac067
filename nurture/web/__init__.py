"""The web app of ``nurture serve``: unsubscribe and preference pages, SendGrid's Event Webhook.

Built on Starlette; imported only by ``nurture serve`` and the tests (the CLI imports it lazily).
"""

from nurture.web.app import create_app

__all__ = ["create_app"]
