"""The APIs the fake can pass for: OpenAI's, Azure OpenAI's two, and a compatible list
without `has_more`. Each has its own path, its own way of checking the key, and its quirks.

- `openai`: `/v1/...`, `Authorization: Bearer KEY`.
- `azure`: the dated API, `/openai/...?api-version=V` (V one of AZURE_API_VERSIONS; none is a
  404, another a 400), the key in an `api-key` header, or an Entra ID token as a bearer
  (here: the key); batches say `/chat/completions`, not `/v1/chat/completions`, and carry
  `first_id` and `last_id` of their own, as Azure's examples show them.
- `azure-v1`: Azure's v1 API, `/openai/v1/...`, no version, `api-key` or bearer.
- `no-has-more`: as `openai`, but list pages never say `has_more` (Groq's list): a client
  walks on until an empty page.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .replies import json_reply, unauthorized

FLAVORS = ("openai", "azure", "azure-v1", "no-has-more")
# Azure OpenAI's dated API versions that serve Batch: the GA one and the previews.
AZURE_API_VERSIONS = (
    "2024-10-21",
    "2024-07-01-preview",
    "2025-01-01-preview",
    "2025-04-01-preview",
)

_AZURE_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API "
    "endpoint for your resource."
)


def _azure_error(status: int, message: str) -> web.Response:
    """Azure's error envelope: the code is the status, as text."""
    return json_reply(status, {"error": {"code": str(status), "message": message}})


@dataclass(frozen=True)
class Flavor:
    """How one kind of API differs from OpenAI's."""

    name: str
    api_key: str

    @property
    def prefix(self) -> str:
        """The path every route begins with."""
        return {"azure": "/openai", "azure-v1": "/openai/v1"}.get(self.name, "/v1")

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request whose key or API version is wrong, else None."""
        if self.name not in {"azure", "azure-v1"}:
            return self._bearer_refusal(request)
        key = request.headers.get("api-key")
        if key is None and "Authorization" in request.headers:
            refusal = self._bearer_refusal(request)
            if refusal is not None:
                return refusal
        elif key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return _azure_error(401, _AZURE_DENIED)
        if self.name == "azure":
            version = request.query.get("api-version")
            if version is None:
                return _azure_error(404, "Resource not found")
            if version not in AZURE_API_VERSIONS:
                return _azure_error(400, f"API version {version[:40]} is not supported")
        return None

    def _bearer_refusal(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if hmac.compare_digest(header.encode(), f"Bearer {self.api_key}".encode()):
            return None
        return unauthorized(header)

    def batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A batch object as this API sends it."""
        endpoint = batch.get("endpoint")
        if self.name == "azure" and isinstance(endpoint, str):
            own = {"first_id": batch["id"], "last_id": batch["id"]}
            return {**batch, "endpoint": endpoint.removeprefix("/v1"), **own}
        return batch

    def page(self, page: dict[str, Any]) -> dict[str, Any]:
        """A list page as this API sends it."""
        if self.name == "no-has-more":
            return {name: value for name, value in page.items() if name != "has_more"}
        return page
