"""Pictures and links on materialisations, as the Dagster UI shows them."""

from __future__ import annotations

import base64

from dagster import MetadataValue

from klio_dagster.core.plots import image_mime


def preview_markdown(feature: str, track: str, preview_b64: str) -> str:
    """The preview as Markdown with the image inline.

    The UI draws a materialisation's description inline, at the image's size
    (the Events tab, in a box 320 px high); Markdown metadata longer than 1,000
    characters sits behind "[Show Markdown]" (the partition page), which opens
    it at its size. Both hold it: an inline image needs a data URI, since the
    UI has no URL to fetch a stored file from.
    """
    mime = image_mime(base64.b64decode(preview_b64[:16])) or "image/png"  # checked by the worker
    return f"![{feature} of {track}](data:{mime};base64,{preview_b64})"


def link_to(uri: str) -> MetadataValue:
    """A link to a stored output: GCS objects open in the Cloud console's browser; local files show their path to copy."""
    if uri.startswith("gs://"):
        return MetadataValue.url("https://storage.cloud.google.com/" + uri.removeprefix("gs://"))
    return MetadataValue.path(uri)
