"""Pictures of features a person can read: waveforms, spectrograms, mel, MFCC and chroma.

In the manner of ``librosa.display`` (whose ``specshow`` and ``waveshow`` draw
them), but with no global state: each call makes its own matplotlib
``Figure`` on an Agg canvas, never pyplot's, so Beam workers and threads can
draw at once. A feature with ``output="png"`` may return the figure itself;
:func:`figure_image` encodes one for a ``FeatureOutput`` preview.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The default picture: as wide as the Dagster UI's event column.
WIDTH_PX, HEIGHT_PX, DPI = 760, 280, 100

_MIME_BY_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"RIFF", "image/webp"))


def image_mime(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG or WebP bytes, from their first bytes; ``None`` for anything else."""
    return next((mime for magic, mime in _MIME_BY_MAGIC if data.startswith(magic)), None)


def new_figure(width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX, title: str | None = None) -> Figure:
    """An empty figure of ``width_px`` x ``height_px`` pixels on its own Agg canvas, with one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def figure_image(fig: Figure, image_format: str = "webp") -> bytes:
    """``fig`` drawn and encoded: ``"webp"`` (smallest, for previews), ``"jpeg"`` or ``"png"``; no timestamp in the bytes."""
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    buf = io.BytesIO()
    options = {"png": {}, "jpeg": {"quality": 85}, "webp": {"quality": 80, "method": 2}}[image_format]
    Image.fromarray(rgba[..., :3]).save(buf, format=image_format.upper(), **options)
    return buf.getvalue()


def waveform_figure(
    y: np.ndarray, *, sr: int, title: str | None = None, width_px: int = WIDTH_PX, height_px: int = HEIGHT_PX
) -> Figure:
    """The waveform (its envelope when long) against time.

    Parameters
    ----------
    y : np.ndarray, shape=(n,) or (channels, n)
        Samples in [-1, 1]; channels are drawn over each other.
    sr : int > 0
        Sample rate of ``y``, in Hz.
    title : str, optional
    width_px, height_px : int
        Size of the figure, in pixels.
    """
    import librosa.display

    fig = new_figure(width_px, height_px, title)
    ax = fig.axes[0]
    librosa.display.waveshow(np.asarray(y), sr=sr, ax=ax)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    fig.tight_layout()
    return fig


def spectrogram_figure(
    S_db: np.ndarray,
    *,
    sr: int,
    hop_length: int = 512,
    y_axis: str = "log",
    title: str | None = None,
    colorbar_format: str | None = "%+.0f dB",
    width_px: int = WIDTH_PX,
    height_px: int = HEIGHT_PX,
) -> Figure:
    """A spectrogram-like ``(bins, frames)`` array against time, drawn by ``librosa.display.specshow``.

    Parameters
    ----------
    S_db : np.ndarray, shape=(bins, frames)
        Values to colour, usually dB (``librosa.amplitude_to_db(S, ref=np.max)``).
    sr : int > 0
        Sample rate of the audio the frames come from, in Hz.
    hop_length : int > 0
        Samples between frames.
    y_axis : str
        ``specshow``'s frequency axis: ``"log"``, ``"linear"``, ``"mel"``, ``"chroma"``, or ``None`` for bin numbers.
    title : str, optional
    colorbar_format : str, optional
        Format of the colour bar's labels; ``None``: no colour bar.
    width_px, height_px : int
        Size of the figure, in pixels.
    """
    import librosa.display

    fig = new_figure(width_px, height_px, title)
    ax = fig.axes[0]
    mesh = librosa.display.specshow(
        np.asarray(S_db), sr=sr, hop_length=hop_length, x_axis="time", y_axis=y_axis, ax=ax, cmap="magma"
    )
    if colorbar_format:
        fig.colorbar(mesh, ax=ax, format=colorbar_format, pad=0.01, fraction=0.04)
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def mel_figure(S_db: np.ndarray, *, sr: int, hop_length: int = 512, fmax: float | None = None, title: str | None = None) -> Figure:
    """A mel spectrogram in dB, shape ``(n_mels, frames)``, with frequencies in Hz (``fmax``: its top band edge)."""
    import librosa.display

    fig = new_figure(title=title)
    ax = fig.axes[0]
    mesh = librosa.display.specshow(
        np.asarray(S_db), sr=sr, hop_length=hop_length, x_axis="time", y_axis="mel", fmax=fmax, ax=ax, cmap="magma"
    )
    fig.colorbar(mesh, ax=ax, format="%+.0f dB", pad=0.01, fraction=0.04)
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def mfcc_figure(mfcc: np.ndarray, *, sr: int, hop_length: int = 512, title: str | None = None) -> Figure:
    """MFCCs, shape ``(n_mfcc, frames)``, coefficient against time."""
    fig = spectrogram_figure(mfcc, sr=sr, hop_length=hop_length, y_axis=None, title=title, colorbar_format="%+.0f")
    fig.axes[0].set_ylabel("MFCC")
    return fig


def chroma_figure(chroma: np.ndarray, *, sr: int, hop_length: int = 512, title: str | None = None) -> Figure:
    """A chromagram, shape ``(12, frames)`` in [0, 1], pitch class against time."""
    return spectrogram_figure(chroma, sr=sr, hop_length=hop_length, y_axis="chroma", title=title, colorbar_format="%.1f")


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

    n_mels, frames = S_db.shape
    fmax = float(fmax or sr / 2)
    fig = new_figure(width_px, height_px, title)
    fig.subplots_adjust(left=0.09, right=0.9, bottom=0.16, top=0.9 if title else 0.96)
    ax = fig.axes[0]
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
    fig.colorbar(mesh, ax=ax, format="%+.0f dB", pad=0.01, fraction=0.04)
    return figure_image(fig, image_format)


def _at_most_columns(image: np.ndarray, columns: int) -> np.ndarray:
    """``image`` with blocks of columns averaged so that it has at most ``columns``: what a screen can show."""
    if image.shape[1] <= columns:
        return image
    step = -(-image.shape[1] // columns)
    usable = image.shape[1] // step * step
    return image[:, :usable].reshape(image.shape[0], -1, step).mean(axis=2)
