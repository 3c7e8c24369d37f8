"""Sample complete ICT heads: identity, expression, appearance, hair and accessories, from a seed."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .accessories import ACCESSORY_KINDS, anchors, build_accessories, load_user_accessory
from .appearance import AppearanceParams, eye_mouth_colors, skin_maps
from .assets import HeadAsset, Part
from .hair import HairParams, build_hair, tuck_under_hat
from .ict import ICTModel
from .look import LookParams, eye_texture, eye_uvs, eyelashes, torso_parts

if TYPE_CHECKING:
    from .config import AssetsConfig, UserAccessory


@dataclass
class HeadSpec:
    """Everything that determines one head; ``HeadSpec.sample(seed)`` is deterministic."""

    seed: int
    identity: np.ndarray
    expression: np.ndarray
    appearance: AppearanceParams
    hair: HairParams
    accessories: list[str] = field(default_factory=list)
    look: LookParams | None = None  # skin detail, eyes, lashes, shoulders and garment (None: the plain look)

    @classmethod
    def sample(cls, model: ICTModel, seed: int, cfg: "AssetsConfig") -> "HeadSpec":
        rng = np.random.default_rng(seed)
        identity = model.sample_identity(rng, n_modes=cfg.identity_modes, scale=cfg.identity_scale)
        expression = model.sample_expression(rng, max_active=cfg.max_expressions, max_weight=cfg.max_expression_weight)
        app = AppearanceParams.sample(rng)
        hair = HairParams.sample(rng, color=app.hair_color, cfg=cfg.hair)
        acc = [k for k in ACCESSORY_KINDS if rng.random() < getattr(cfg.accessory_prob, k)]
        if "hat" in acc and "headphones" in acc:
            acc.remove("headphones")
        look = LookParams.sample(np.random.default_rng([seed, 13]), cfg.look)  # its own stream: other draws unchanged
        return cls(seed, identity, expression, app, hair, acc, look)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "identity": self.identity.round(5).tolist(), "expression": self.expression.round(5).tolist(),
                "appearance": self.appearance.to_dict(), "hair": self.hair.to_dict(), "accessories": list(self.accessories),
                **({"look": self.look.to_dict()} if self.look is not None else {})}


def skin_parts(model: ICTModel, vertices: np.ndarray, app: AppearanceParams, texture_size: int = 512,
               look: LookParams | None = None) -> list[Part]:
    """Skin (textured Face+BackHead atlas), eyes, mouth interior and lashes of one ICT head. With ``look``:
    skin detail and spec map, painted eyes and thin lashes on the lid margins (instead of ICT's lash cards)."""
    mats = model.materials
    tex, spec_map = skin_maps(model, app, texture_size, look)
    colors = eye_mouth_colors(model, vertices, app)
    parts = []
    skin = model.face_mask(("M_Face", "M_BackHead"))
    f = model.faces[skin]
    uv = model.uv[model.faces_uv[skin]].copy()
    uv[..., 0] /= 2.0  # UDIM tiles 0 and 1 side by side in one atlas
    parts.append(_compact(Part("skin", vertices, f, "skin", face_uv=uv, texture=tex, spec_map=spec_map)))
    for name, materials, material in [("eyes", ("M_ScleraLeft", "M_IrisLeft", "M_ScleraRight", "M_IrisRight"), "eye"),
                                      ("mouth", ("M_GumsTongue", "M_Teeth"), "teeth"), ("eyelashes", ("M_EyeLashes",), "hair")]:
        sel = model.face_mask(tuple(m for m in materials if m in mats))
        if look is not None and name == "eyes":
            ef = model.faces[sel]
            parts.append(_compact(Part(name, vertices, ef, material, face_uv=eye_uvs(model, vertices, ef),
                                       texture=eye_texture(app.iris_color, look.seed, max(128, texture_size // 2)))))
        elif look is not None and name == "eyelashes":
            parts.append(eyelashes(vertices[model.landmarks].astype(np.float64), app.hair_color, look.seed))
        else:
            parts.append(_compact(Part(name, vertices, model.faces[sel], material, vertex_colors=colors)))
    return parts


def _compact(p: Part) -> Part:
    """Keep only the vertices a part's faces use (the ICT head part keeps its own indexing)."""
    used = np.unique(p.faces)
    remap = np.full(len(p.vertices), -1, np.int32)
    remap[used] = np.arange(len(used))
    vc = p.vertex_colors[used] if p.vertex_colors is not None else None
    out = Part(p.name, p.vertices[used], remap[p.faces], p.material, vc, p.face_uv, p.texture, p.opacity, p.spec_map)
    return out


def build_head(model: ICTModel, spec: HeadSpec, texture_size: int,
               user_accessories: "tuple[UserAccessory, ...]" = ()) -> HeadAsset:
    """The full head asset for a spec, with provenance; each user accessory is added with its
    probability (a stream of its own, so adding one does not change the other heads' samples)."""
    verts = model.vertices(spec.identity, spec.expression)
    parts = skin_parts(model, verts, spec.appearance, texture_size, spec.look)
    skin = model.face_mask(("M_Face", "M_BackHead"))
    hair = build_hair(verts, model.faces[skin], spec.hair)
    parts += hair
    acc = build_accessories(spec.accessories, model, verts, parts, np.random.default_rng(spec.seed + 7))
    parts = tuck_under_hat(parts, [p for p in acc if p.name.startswith("hat_")]) + acc  # no cards through a hat
    rng = np.random.default_rng(spec.seed + 11)
    for ua in user_accessories:
        if rng.random() < ua.prob:
            parts.append(load_user_accessory(ua.mesh, ua.spec, anchors(model, verts)))
            spec = dataclasses.replace(spec, accessories=[*spec.accessories, f"user:{Path(ua.mesh).name}"])
    if spec.look is not None and spec.look.shoulders:
        parts += torso_parts(parts[0], spec.look, spec.appearance.hair_color)
    meta = {
        "source": "ict-facekit",
        "provenance": {**model.provenance, "generator": "anyhead.heads.build_head", "seed": spec.seed,
                       "license": "MIT (ICT FaceKit geometry); procedural appearance, hair and accessories generated"},
        "spec": spec.to_dict(),
        "identity_id": f"ict-{spec.seed:08d}",
        "landmarks": verts[model.landmarks].round(6).tolist(),
    }
    if spec.look is not None:
        meta["look"] = spec.look.to_dict()
    return HeadAsset(parts, meta)
