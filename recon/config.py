"""The whole typed configuration of a profile: the data sections (:mod:`anyhead.config`) plus training,
the two model architectures and the benchmark settings, parsed once by :func:`load_config`.

Model configs are plain frozen dataclasses (no torch import), so data stages can load the profile
without pulling in the models, and checkpoints can store and compare them as JSON.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from anyhead.config import (
    AssetsConfig,
    CapturesConfig,
    CardConfig,
    ConfigError,
    IctConfig,
    PhotosConfig,
    RawParams,
    RenderConfig,
    ShardsConfig,
    num,
    parse,
    read_params,
    to_dict,
)
from anyhead.paths import Paths


@dataclass(frozen=True)
class ModelConfig:
    """Any3DAvatar's architecture (``any3davatar`` section; ablations override single keys)."""

    image_size: int = num(ge=16, le=2048)  # input portrait side, pixels
    patch: int = num(ge=1)
    dim: int = num(ge=8)
    heads: int = num(ge=1)
    enc_depth: int = num(ge=0)
    den_depth: int = num(ge=1)
    n_anchors: int = num(ge=1)
    gaussians_per_anchor: int = num(ge=1)
    t_star: float = num(ge=0, le=1)  # noise level of the one denoising step; 0 = plain regression
    aux_head: bool  # the training-only view-conditioned appearance head
    plucker: bool  # Plücker ray embedding of each anchor
    scaffold: Literal["structured", "random"]  # template head anchors, or the random ablation
    max_offset: float = num(gt=0, le=0.2)  # metres a Gaussian may move from its anchor
    aux_res: int = num(ge=4)
    aux_patch: int = num(ge=1)
    aux_depth: int = num(ge=1)
    pos_freqs: int = num(ge=0, le=16)
    # -- v2 (arch_version 2; version 1 is the first model, kept for the v1-vs-v2 comparison, and ignores these) --
    arch_version: Literal[1, 2]
    sigma_max: float = num(gt=0, le=10)  # noise std at t = 1, in the unit-scaled Gaussian parameter space
    t_max: float = num(ge=0, le=1)  # training draws t ~ U[0, t_max] per sample; sigma(t) = sigma_max * t
    train_noise: bool  # false: the "no noise in training" ablation (t = 0 in every training step)
    noise_seed: int = num(ge=0)  # seed of the fixed inference noise (one step from the scaffold at t_star)
    feat_dim: int = num(ge=8)  # channels of the convolutional feature map sampled at anchor projections
    feat_stride: Literal[2, 4]  # that map is at 1/feat_stride of the input resolution
    vis_res: int = num(ge=4, le=1024)  # side of the anchor z-buffer used for the visibility test
    vis_tol: float = num(ge=0, le=0.2)  # metres an anchor may lie behind the z-buffer and still count as seen
    mirror: bool  # hidden anchors sample the image at their mirror image (x -> -x in the head frame)
    backbone: str  # "" or a local safetensors file with pretrained ``features.*`` weights (never downloaded)
    sh_degree: int | None = num(ge=0, le=3)  # colour as SH of this degree; null: RGB (v1)
    antialiased: bool  # Gaussians made for (and rendered with) gsplat's antialiased mode, in training and evaluation
    neck_floor: float = num(ge=-0.4, le=0)  # structured scaffold: skin anchors down to this height (metres)
    face_density: float = num(ge=1, le=4)  # face anchors this many times closer together than elsewhere
    hair_offset: float = num(gt=0, le=0.2)  # offset limit over scalp, sides and back (max_offset: face and neck)
    token_group: int = num(ge=1, le=64)  # anchors per denoiser token (k-d tree neighbourhoods): attention over M / g tokens
    # structured scaffold over the shoulders (renders show a torso below the neck); defaults keep earlier checkpoints' meaning
    shoulders: bool = False  # anchors on a mean torso grown from the neck, down to torso_floor
    torso_floor: float = num(-0.34, ge=-0.6, le=-0.25)  # metres (y): the lowest torso anchors (the torso starts near -0.23)
    torso_density: float = num(0.6, gt=0, le=4)  # torso anchors this many times closer together than on the head (< 1: sparser)
    arch: Literal["any3davatar"] = "any3davatar"

    def __post_init__(self) -> None:
        if self.arch_version == 2 and self.patch % self.feat_stride:
            raise ConfigError("patch", f"{self.patch} is not a multiple of feat_stride {self.feat_stride} "
                              "(the ViT patchifies the feature map)")
        if self.arch_version == 2 and self.n_anchors % self.token_group:
            raise ConfigError("token_group", f"{self.token_group} does not divide n_anchors {self.n_anchors}")
        if self.arch_version == 2 and (self.image_size // self.feat_stride) * self.feat_stride != self.image_size:
            raise ConfigError("feat_stride", f"{self.feat_stride} does not divide image_size {self.image_size}")
        if self.shoulders and (self.arch_version != 2 or self.scaffold != "structured"):
            raise ConfigError("shoulders", "needs arch_version 2 and the structured scaffold (v1 and the random "
                                           "ablation have no template to grow a torso from)")
        if self.image_size % self.patch:
            raise ConfigError("patch", f"{self.patch} does not divide image_size {self.image_size}")
        if self.dim % self.heads:
            raise ConfigError("heads", f"{self.heads} does not divide dim {self.dim}")
        if self.aux_res % self.aux_patch:
            raise ConfigError("aux_patch", f"{self.aux_patch} does not divide aux_res {self.aux_res}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return parse(cls, d, "model")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass(frozen=True)
class SplatterConfig:
    """Splatter Image's architecture (``splatter_image`` section)."""

    image_size: int = num(ge=16, le=2048)
    base: int = num(ge=4)  # channels of the first U-Net level
    levels: int = num(ge=1, le=6)
    out_stride: int = num(ge=1)  # one Gaussian per pixel of the image_size / out_stride grid
    near: float = num(ge=-1, le=1)  # depth range along each ray, relative to the camera's distance to the head centre
    far: float = num(ge=-1, le=1)
    max_offset: float = num(ge=0, le=0.2)
    arch: Literal["splatter_image"] = "splatter_image"

    def __post_init__(self) -> None:
        if self.near >= self.far:
            raise ConfigError("far", f"{self.far} must be greater than near {self.near}")
        if self.image_size % (2 ** (self.levels - 1) * self.out_stride):
            raise ConfigError("image_size", f"{self.image_size} is not divisible by 2^(levels-1) * out_stride")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SplatterConfig":
        return parse(cls, d, "model")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


ArchConfig = ModelConfig | SplatterConfig
ARCHS: dict[str, type] = {"any3davatar": ModelConfig, "splatter_image": SplatterConfig}


def model_config_from_dict(d: dict[str, Any], path: str = "model") -> ArchConfig:
    """A model config from a stored dict (checkpoint metadata), by its ``arch``."""
    arch = d.get("arch", "any3davatar")
    if arch not in ARCHS:
        raise ConfigError(f"{path}.arch", f"{arch!r} is not one of {', '.join(ARCHS)}")
    return parse(ARCHS[arch], d, path)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the training loss terms (0 switches a term off)."""

    l1: float = num(ge=0)
    ssim: float = num(ge=0)
    lpips: float = num(ge=0)
    mask: float = num(ge=0)
    aux: float = num(ge=0)  # the appearance head's L1
    aux_lpips: float = num(ge=0)  # ... and its LPIPS
    fg_weight: float = num(ge=0)  # L1 weight of a foreground pixel is 1 + fg_weight (background 1), normalised


@dataclass(frozen=True)
class TrainConfig:
    """The trainer: budget, optimisation and logging, shared by every learned method."""

    batch_size: int = num(ge=1)
    n_targets: int = num(ge=1)  # target views rendered per sample and step
    target_size: int = num(ge=8, le=4096)  # targets are loaded at this resolution (the evaluation's, with crop_size)
    crop_size: int | None = num(ge=8, le=4096)  # render and supervise a random crop_size window of each target view
    steps: int = num(ge=1)
    time_budget_min: float | None = num(gt=0)  # stop early, checkpointed, when spent (null: no limit)
    lr: float = num(gt=0, le=1)
    weight_decay: float = num(ge=0, le=1)
    warmup: int = num(ge=0)
    loss: LossConfig
    seed: int = num(ge=0)
    log_every: int = num(ge=1)
    ckpt_every: int = num(ge=1)
    bf16: bool  # autocast on CUDA
    ema_decay: float = num(ge=0, lt=1)  # EMA of the weights (what is evaluated and exported); 0 = off
    data_path: Literal["auto", "device", "stream", "decode"]  # see recon.cache; auto picks device or stream by size
    loader_workers: int = num(ge=0)  # DataLoader workers of the stream path
    compile: bool  # torch.compile the model's forward (CUDA)
    # fraction of each batch drawn from the ``photos`` split: single-view portraits supervised on their input view
    # only (recon.mix); 0 = multi-view samples only (the batches of before)
    photo_mix: float = num(ge=0, lt=1)
    use_captures: bool  # add the ``captures`` split's samples to the multi-view pool (recon.mix)

    def __post_init__(self) -> None:
        if self.warmup > self.steps:
            raise ConfigError("warmup", f"{self.warmup} is more than steps {self.steps}")
        if self.crop_size is not None and self.crop_size > self.target_size:
            raise ConfigError("crop_size", f"{self.crop_size} is more than target_size {self.target_size}")

    @property
    def loss_size(self) -> int:
        """Side of the supervised (rendered) window of each target view."""
        return self.target_size if self.crop_size is None else self.crop_size


@dataclass(frozen=True)
class BenchmarkConfig:
    """``benchmarks.run`` settings."""

    lpips: bool  # compute LPIPS (needs the converted AlexNet weights)
    fit_iters: int = num(ge=1)  # most iterations of the single-view-fit baseline
    fit_lr: float = num(gt=0, le=1)
    fit_tol: float = num(ge=0, lt=1)  # converged: relative loss decrease over 25 iterations below this
    csim: bool  # identity similarity (dlib face embeddings; benchmarks.metrics.identity)
    arcface_onnx: str  # "" for dlib's embedding, or a local ArcFace .onnx file used instead
    geometry_stride: int = num(ge=1, le=16)  # back-project every n-th pixel for Chamfer / F-score
    timing_iters: int = num(ge=1)  # repetitions of the inference-only timing per timed head
    timing_heads: int = num(ge=1)  # heads timed (the first of the split)
    bootstrap: int = num(ge=100)  # bootstrap resamples (over heads) for confidence intervals


SECTIONS: dict[str, type] = {
    "assets": AssetsConfig, "render": RenderConfig, "shards": ShardsConfig, "photos": PhotosConfig,
    "train": TrainConfig, "any3davatar": ModelConfig, "splatter_image": SplatterConfig, "benchmark": BenchmarkConfig,
    "card": CardConfig, "captures": CapturesConfig,
}


@dataclass(frozen=True)
class ProfileConfig:
    """One profile, every section parsed and validated."""

    name: str
    paths: Paths
    ict: IctConfig
    assets: AssetsConfig
    render: RenderConfig
    shards: ShardsConfig
    photos: PhotosConfig
    train: TrainConfig
    any3davatar: ModelConfig
    splatter_image: SplatterConfig
    benchmark: BenchmarkConfig
    card: CardConfig
    captures: CapturesConfig

    def to_dict(self) -> dict[str, Any]:
        return {k: to_dict(getattr(self, k)) for k in ("ict", *SECTIONS)} | {"profile": self.name}


def load_config(params: str | os.PathLike[str] = "params.yaml", profile: str | None = None,
                root: str | os.PathLike[str] | None = None) -> ProfileConfig:
    """Parse and validate the whole active profile of ``params`` (see :mod:`anyhead.config`).

    ``root`` (default: the params file's folder) anchors :class:`anyhead.paths.Paths`."""
    raw: RawParams = read_params(params, profile)
    missing = sorted(set(SECTIONS) - set(raw.base))
    if missing:
        raise ConfigError(f"base.{missing[0]}", f"missing section in {raw.path}")
    extra = sorted(set(raw.base) - set(SECTIONS))
    if extra:
        raise ConfigError(f"base.{extra[0]}", f"unknown section; sections: {', '.join(SECTIONS)}")
    sections = {name: raw.section(cls, name) for name, cls in SECTIONS.items()}
    if sections["splatter_image"].image_size != sections["any3davatar"].image_size:
        raise ConfigError(f"profiles.{raw.profile}.splatter_image.image_size",
                          "must equal any3davatar.image_size: the methods are compared on the same inputs")
    a3, tr = sections["any3davatar"], sections["train"]
    if a3.arch_version == 2 and a3.aux_head and a3.aux_res != tr.loss_size:
        raise ConfigError(f"profiles.{raw.profile}.any3davatar.aux_res",
                          f"{a3.aux_res} must equal the loss resolution {tr.loss_size} (train.crop_size or target_size): "
                          "v2's appearance head predicts the supervised window at full resolution")
    if sections["train"].n_targets > sections["render"].n_targets:
        raise ConfigError(f"profiles.{raw.profile}.train.n_targets",
                          f"{sections['train'].n_targets} is more than the {sections['render'].n_targets} rendered targets")
    root = Path(root) if root is not None else Path(params).parent  # relative stays relative: records stay portable
    return ProfileConfig(raw.profile, Paths(root, raw.profile), parse(IctConfig, raw.ict, "ict"), **sections)
