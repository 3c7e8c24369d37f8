"""Identity preservation (CSIM): cosine similarity of face-recognition embeddings between the input
portrait and each rendered view in which a face is found, with the detection rate beside it.

* Default embedder: dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``,
  128-D) with dlib's 5-point landmark alignment, weights from the ``face_recognition_models``
  package (pinned in pyproject.toml; located on disk without importing that package, whose
  ``__init__`` needs ``pkg_resources``).
* Detection: dlib's HOG frontal face detector (ships in dlib). The HOG window is 80 x 80 px, so
  small images are upsampled by powers of 2 until the short side is >= 512 px (a 256 px render is
  upsampled once). The highest-scoring detection is used.
* ArcFace: a user-supplied ONNX file (``--arcface PATH``) replaces the dlib descriptor and runs
  through onnxruntime on a 112 x 112 crop aligned to the standard ArcFace 5-point template
  (eye centres, nose tip, mouth corners from dlib's 68-point predictor), RGB, (x - 127.5) / 127.5.
* Only views within 90 degrees of the input camera count (``benchmarks.protocol``); the detection
  rate is over those views. Views without a face get no similarity (NaN), so CSIM is the mean over
  detected views and must be read together with the detection rate.
* dlib descriptors are not zero-centred: cosine similarities of different people are typically
  0.8-0.9 (astronaut vs Grace Hopper: 0.88), so differences look small; dlib's own decision rule
  is a Euclidean distance < 0.6 for the same person, reported as ``match_rate``. On AnyHead renders
  (tests/test_identity.py) the same head 15 / 45 degrees away scores 0.99 / 0.96 and another head
  from the same camera 0.89; the HOG detector finds ICT faces up to 60-75 degrees of yaw. The useful
  range is narrow: compare methods within a bucket, with paired differences (``stats``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anyhead.io import sha256_file

CARD: dict[str, Any] = {
    "csim": "mean over counted views with a detected face of cos(e_input, e_view), e = face-recognition embedding",
    "views": "targets within 90 degrees of the input camera (relative angle about the head centre)",
    "input": "the input portrait as the method receives it (composited on white)",
    "renders": "predicted views rendered on white, [0, 1] RGB quantised to 8 bits",
    "detection_rate": "fraction of counted views in which the detector finds a face",
    "no_face": "a view without a detected face has no similarity (NaN) and lowers the detection rate only",
    "faces_per_image": "the highest-scoring detection",
    "scale": "dlib: same head 15 / 45 degrees apart ~0.99 / 0.96, different AnyHead heads ~0.87-0.93",
}

# ArcFace's 5-point template in a 112 x 112 crop (image-left eye, image-right eye, nose tip, mouth
# corners), the standard alignment of ArcFace models
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]])
DLIB_MATCH_DISTANCE = 0.6  # dlib's documented same-person threshold on Euclidean descriptor distance


def face_models_dir() -> Path:
    """Folder of the .dat files shipped by ``face_recognition_models``, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face_recognition_models is not installed: pip install face-recognition-models==0.3.0")
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: face_recognition_models ships no models folder")
    return d


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def to_uint8_rgb(image: Any) -> np.ndarray:
    """(H, W, 3) contiguous uint8 RGB from uint8/float numpy (H, W, 3|4), (3, H, W) or (H, W) in [0, 255]/[0, 1],
    or a torch tensor (3, H, W) in [0, 1]."""
    if hasattr(image, "detach"):  # torch, channels first
        image = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):  # numpy channels first
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def auto_upsample(image: np.ndarray, min_side: int = 512, max_times: int = 3) -> int:
    """How many 2x upsamplings bring the image's short side to >= ``min_side`` (at most ``max_times``)."""
    s = min(image.shape[:2])
    return int(min(max_times, max(0, math.ceil(math.log2(min_side / s))))) if s > 0 else 0


@dataclass(frozen=True)
class Face:
    """One detected face: box (left, top, right, bottom) in pixels, detector score, embedding (D,)."""

    box: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray = field(repr=False)


class FaceEmbedder(Protocol):
    """Detect the main face of an image and embed it."""

    name: str
    match_distance: float | None

    def embed(self, image: Any) -> Face | None: ...

    def card(self) -> dict[str, Any]: ...


class _DlibDetector:
    """dlib's HOG frontal face detector with automatic upsampling; the best detection."""

    def __init__(self, upsample: int | None = None, min_side: int = 512) -> None:
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.upsample, self.min_side = upsample, min_side

    def detect(self, img: np.ndarray) -> tuple[Any, float] | None:
        up = self.upsample if self.upsample is not None else auto_upsample(img, self.min_side)
        rects, scores, _ = self.detector.run(img, up, 0.0)
        if not rects:
            return None
        i = int(np.argmax(scores))
        return rects[i], float(scores[i])

    def card(self) -> dict[str, Any]:
        up = f"{self.upsample}x2" if self.upsample is not None else f"2x until the short side >= {self.min_side} px (max 3)"
        return {"detector": f"dlib {_version('dlib-bin')} get_frontal_face_detector (HOG + linear SVM, 80 px window), "
                            "threshold 0", "upsampling": up}


class DlibFaceEmbedder:
    """dlib ResNet face descriptor (128-D) on dlib's 5-point aligned 150 px chip (padding 0.25)."""

    name = "dlib-resnet-v1"
    match_distance: float | None = DLIB_MATCH_DISTANCE

    def __init__(self, upsample: int | None = None, num_jitters: int = 0, padding: float = 0.25,
                 models_dir: str | Path | None = None) -> None:
        import dlib

        d = Path(models_dir) if models_dir else face_models_dir()
        self._det = _DlibDetector(upsample)
        self.shape_path = d / "shape_predictor_5_face_landmarks.dat"
        self.model_path = d / "dlib_face_recognition_resnet_model_v1.dat"
        self.shape = dlib.shape_predictor(str(self.shape_path))
        self.model = dlib.face_recognition_model_v1(str(self.model_path))
        self.num_jitters, self.padding = num_jitters, padding

    def embed(self, image: Any) -> Face | None:
        """The embedding of the highest-scoring face, or None when no face is found."""
        img = to_uint8_rgb(image)
        hit = self._det.detect(img)
        if hit is None:
            return None
        rect, score = hit
        e = np.asarray(self.model.compute_face_descriptor(img, self.shape(img, rect), self.num_jitters, self.padding))
        return Face((rect.left(), rect.top(), rect.right(), rect.bottom()), score, e)

    def card(self) -> dict[str, Any]:
        return {"model": f"dlib_face_recognition_resnet_model_v1 (ResNet-29, 128-D) from face_recognition_models "
                         f"{_version('face_recognition_models')}",
                "weights_sha256": sha256_file(self.model_path), "dlib": _version("dlib-bin"),
                **self._det.card(),
                "preprocessing": f"8-bit RGB; 5-point landmarks (shape_predictor_5_face_landmarks); dlib face chip "
                                 f"150 x 150, padding {self.padding}, {self.num_jitters} jitters",
                "match_rate": f"fraction of detected views with Euclidean descriptor distance < {DLIB_MATCH_DISTANCE} "
                              "(dlib's same-person rule)"}


class ArcFaceOnnxEmbedder:
    """A user-supplied ArcFace ONNX model (N, 3, 112, 112) -> (N, D) through onnxruntime, on a crop aligned
    to the ArcFace 5-point template with dlib's 68-point landmarks."""

    match_distance: float | None = None

    def __init__(self, onnx_path: str | Path, upsample: int | None = None, mean: float = 127.5, std: float = 127.5,
                 providers: Sequence[str] | None = None, models_dir: str | Path | None = None) -> None:
        import dlib
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ArcFace ONNX file not found")
        d = Path(models_dir) if models_dir else face_models_dir()
        self._det = _DlibDetector(upsample)
        self.shape = dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))
        self.session = ort.InferenceSession(str(self.path), providers=list(providers or ["CPUExecutionProvider"]))
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise ValueError(f"{self.path}: expected one image input (N, 3, H, W) or (N, H, W, 3), got {inp.shape}")
        self.channels_last = shape[1] != 3
        hw = shape[1:3] if self.channels_last else shape[2:4]
        self.size = int(hw[0]) if isinstance(hw[0], int) else 112
        self.input_name, self.input_shape = inp.name, shape
        self.mean, self.std = mean, std
        self.name = f"arcface-onnx:{self.path.name}"
        self.sha256 = sha256_file(self.path)

    def landmarks5(self, img: np.ndarray, rect: Any) -> np.ndarray:
        """(5, 2) ArcFace landmarks (eye centres, nose tip, mouth corners) from the 68-point predictor."""
        p = np.array([(q.x, q.y) for q in self.shape(img, rect).parts()], dtype=np.float64)
        return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])

    def align(self, img: np.ndarray, lm5: np.ndarray) -> tuple[np.ndarray, Any]:
        """(size, size, 3) uint8 crop by the similarity transform taking ``lm5`` onto the template; and the transform."""
        from skimage.transform import SimilarityTransform, warp

        dst = ARCFACE_TEMPLATE_112 * (self.size / 112.0)
        tf = SimilarityTransform.from_estimate(lm5, dst)
        crop = warp(img, tf.inverse, output_shape=(self.size, self.size), order=1, mode="constant", cval=0.0,
                    preserve_range=True)
        return np.clip(crop + 0.5, 0, 255).astype(np.uint8), tf

    def embed(self, image: Any) -> Face | None:
        img = to_uint8_rgb(image)
        hit = self._det.detect(img)
        if hit is None:
            return None
        rect, score = hit
        crop, _ = self.align(img, self.landmarks5(img, rect))
        x = (crop.astype(np.float32) - self.mean) / self.std
        x = x[None] if self.channels_last else x.transpose(2, 0, 1)[None]
        e = np.asarray(self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0], dtype=np.float64)
        return Face((rect.left(), rect.top(), rect.right(), rect.bottom()), score, e.reshape(-1))

    def card(self) -> dict[str, Any]:
        return {"model": f"user ArcFace ONNX {self.path.name}", "path": str(self.path), "weights_sha256": self.sha256,
                "onnxruntime": _version("onnxruntime"), "input": f"{self.input_name} {self.input_shape}", **self._det.card(),
                "preprocessing": f"8-bit RGB; 68-point landmarks (face_recognition_models "
                                 f"{_version('face_recognition_models')}) -> eye centres, nose tip, mouth corners; "
                                 f"similarity transform to the ArcFace 112 px template scaled to {self.size} px, "
                                 f"bilinear; (x - {self.mean}) / {self.std}, "
                                 f"{'NHWC' if self.channels_last else 'NCHW'}"}


def load_embedder(arcface_onnx: str | Path | None = None, **kwargs: Any) -> FaceEmbedder:
    """The ArcFace ONNX embedder where a path is given, else dlib's ResNet (``kwargs`` go to the constructor)."""
    if arcface_onnx:
        return ArcFaceOnnxEmbedder(arcface_onnx, **kwargs)
    return DlibFaceEmbedder(**kwargs)


@lru_cache(maxsize=4)
def cached_embedder(arcface_onnx: str | None = None) -> FaceEmbedder:
    """One embedder per process and model (loading dlib's models takes ~0.3 s)."""
    return load_embedder(arcface_onnx)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """cos(a, b) of two (D,) vectors."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


@dataclass
class CSIMResult:
    """Per-view identity similarities of one head. Lists are per target view, in the order given."""

    similarity: list[float]  # NaN where not counted or no face
    detected: list[bool]  # face found (only tried on counted views)
    counted: list[bool]  # within the protocol's angle of the input
    distance: list[float]  # Euclidean descriptor distance (NaN where no similarity)
    input_detected: bool
    match_distance: float | None = None

    @property
    def n_counted(self) -> int:
        return int(sum(self.counted))

    @property
    def n_detected(self) -> int:
        return int(sum(d for d, c in zip(self.detected, self.counted) if c))

    @property
    def detection_rate(self) -> float:
        return self.n_detected / self.n_counted if self.n_counted else math.nan

    @property
    def mean(self) -> float:
        """CSIM of the head: mean similarity over counted views with a face (NaN if none)."""
        v = [s for s in self.similarity if not math.isnan(s)]
        return float(np.mean(v)) if v else math.nan

    @property
    def match_rate(self) -> float:
        """Fraction of detected views within the embedder's same-person distance (NaN without one)."""
        d = [x for x in self.distance if not math.isnan(x)]
        if self.match_distance is None or not d:
            return math.nan
        return float(np.mean([x < self.match_distance for x in d]))

    def summary(self) -> dict[str, float | int | bool]:
        """Per-head numbers for a results row."""
        return {"csim": self.mean, "face_detection_rate": self.detection_rate, "csim_match_rate": self.match_rate,
                "csim_views": self.n_counted, "csim_faces": self.n_detected, "input_face": self.input_detected}


def csim(input_image: Any, views: Sequence[Any], embedder: FaceEmbedder, angles_deg: Sequence[float] | None = None,
         max_angle_deg: float = 90.0) -> CSIMResult:
    """Identity similarity of rendered ``views`` to ``input_image``.

    Args:
        input_image: the input portrait (anything :func:`to_uint8_rgb` takes).
        views: rendered target views, same types; a (V, 3, H, W) tensor works too.
        embedder: from :func:`load_embedder`.
        angles_deg: (V,) relative angle of each view to the input camera (``benchmarks.protocol``);
            views beyond ``max_angle_deg`` are not counted. None counts every view.
    """
    n = len(views)
    counted = [True] * n if angles_deg is None else [float(a) <= max_angle_deg + 1e-9 for a in angles_deg]
    if len(counted) != n:
        raise ValueError(f"{n} views but {len(counted)} angles")
    ref = embedder.embed(input_image)
    sims, dists, det = [math.nan] * n, [math.nan] * n, [False] * n
    for i, v in enumerate(views):
        if not counted[i]:
            continue
        f = embedder.embed(v)
        det[i] = f is not None
        if f is not None and ref is not None:
            sims[i] = cosine_similarity(ref.embedding, f.embedding)
            dists[i] = float(np.linalg.norm(ref.embedding - f.embedding))
    return CSIMResult(sims, det, counted, dists, ref is not None, getattr(embedder, "match_distance", None))


def metric_card(embedder: FaceEmbedder) -> dict[str, Any]:
    """The CSIM card: definitions plus the embedder's model, versions, detector and preprocessing."""
    return {**CARD, "embedder": embedder.name, **embedder.card()}
