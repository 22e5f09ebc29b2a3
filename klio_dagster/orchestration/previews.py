"""Pictures and links on materialisations, as the Dagster UI shows them."""

from __future__ import annotations

import base64

from dagster import MetadataValue

_MIME_BY_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"RIFF", "image/webp"))


def image_mime(data: bytes) -> str:
    """The MIME type of PNG, JPEG or WebP bytes (a picture of another kind is refused by browsers anyway)."""
    return next((mime for magic, mime in _MIME_BY_MAGIC if data.startswith(magic)), "image/png")


def preview_markdown(feature: str, track: str, preview_b64: str) -> str:
    """The preview as Markdown with the image inline.

    The UI draws a materialisation's description inline, at the image's size
    (the Events tab, in a box 320 px high); Markdown metadata longer than 1,000
    characters sits behind "[Show Markdown]" (the partition page), which opens
    it at its size. Both hold it: an inline image needs a data URI, since the
    UI has no URL to fetch a stored file from.
    """
    mime = image_mime(base64.b64decode(preview_b64[:16]))
    return f"![{feature} of {track}](data:{mime};base64,{preview_b64})"


def link_to(uri: str) -> MetadataValue:
    """A link to a stored output: GCS objects open in the Cloud console's browser; local files show their path to copy."""
    if uri.startswith("gs://"):
        return MetadataValue.url("https://storage.cloud.google.com/" + uri.removeprefix("gs://"))
    return MetadataValue.path(uri)
