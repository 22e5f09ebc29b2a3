"""Pictures of features a person can read: pure functions from arrays to image bytes.

In the manner of ``librosa.display``, but with no global state: each call
draws on its own matplotlib ``Figure`` (Agg canvas) and returns the encoded
image, so Beam workers and threads can draw at once.
"""

from __future__ import annotations

import io

import numpy as np

_MIME_BY_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"))


def image_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG or WebP bytes, from their first bytes; ``None`` for anything else."""
    return next((mime for magic, mime in _MIME_BY_MAGIC if data.startswith(magic)), None)


def mel_spectrogram_image(
    S_db: np.ndarray,
    sr: int,
    *,
    hop_length: int = 512,
    fmax: float | None = None,
    width_px: int = 760,
    height_px: int = 280,
    title: str | None = None,
    image_format: str = "webp",
) -> bytes:
    """A mel spectrogram with labelled axes: time (s), frequency (Hz) and a dB colour bar.

    Parameters
    ----------
    S_db : np.ndarray, shape=(n_mels, frames)
        Mel spectrogram in dB (as from :func:`klio_dagster.core.audio.mel_spectrogram_db`).
    sr : int > 0
        Sample rate of the audio it was computed from, in Hz.
    hop_length : int > 0
        Samples between frames.
    fmax : float, optional
        Highest mel band edge in Hz (default ``sr / 2``, librosa's default).
    width_px, height_px : int
        Size of the image in pixels.
    title : str, optional
        Drawn above the plot.
    image_format : str
        ``"webp"`` (the smallest: a 760 x 280 picture in about 25 KB), ``"jpeg"`` or ``"png"``.

    Returns
    -------
    bytes
        The encoded image.
    """
    import librosa
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    n_mels, frames = S_db.shape
    fmax = float(fmax or sr / 2)
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    fig.subplots_adjust(left=0.09, right=0.9, bottom=0.16, top=0.9 if title else 0.96)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    duration_s = frames * hop_length / sr
    mesh = ax.imshow(
        _at_most_columns(S_db, width_px), origin="lower", aspect="auto", cmap="magma",
        extent=(0.0, duration_s, 0, n_mels), interpolation="nearest",
    )
    centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmax=fmax)[1:-1]
    ticks_hz = [f for f in (100, 200, 500, 1000, 2000, 5000, 10000, 20000) if centres[0] <= f <= centres[-1]]
    ax.set_yticks(np.interp(ticks_hz, centres, np.arange(n_mels)), [f"{f // 1000}k" if f >= 1000 else str(f) for f in ticks_hz])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(mesh, ax=ax, format="%+.0f dB", pad=0.01, fraction=0.04)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    buf = io.BytesIO()
    options = {"png": {}, "jpeg": {"quality": 85}, "webp": {"quality": 80, "method": 2}}[image_format]
    Image.fromarray(rgba[..., :3]).save(buf, format=image_format.upper(), **options)
    return buf.getvalue()


def _at_most_columns(image: np.ndarray, columns: int) -> np.ndarray:
    """``image`` with blocks of columns averaged so that it has at most ``columns``: what a screen can show."""
    if image.shape[1] <= columns:
        return image
    step = -(-image.shape[1] // columns)
    usable = image.shape[1] // step * step
    return image[:, :usable].reshape(image.shape[0], -1, step).mean(axis=2)
