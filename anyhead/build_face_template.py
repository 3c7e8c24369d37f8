"""Offline: build the face-mesh -> ICT template table ``anyhead/face_template.py`` used by :mod:`anyhead.headpose`.

    python -m anyhead.build_face_template [--ict-archive A] [--out anyhead/face_template.py] [--turned-only]

Renders the ICT mean head with the project's renderer, runs mediapipe's face mesh on every render and
records which landmarks land on a stable skin point, the ICT vertex there, and where each one sits per yaw;
then renders 80 random ICT identities with random expressions at random known poses (and their mirror
images) and fits the pose correction's ridge model on them (the method is described in
:mod:`anyhead.headpose`). Needs the ICT archive; photo analysis needs only the generated table (about 35 kB).
About 5 minutes on 2 cores. The build is deterministic: running it again rewrites the same file.

``--turned-only`` keeps the table's template and near-frontal correction (calibrated on the renderer's first look,
which the renderer no longer draws; real photos are near-frontal and must not move) and refits only the correction
of turned faces (``CORRECTION_TURNED_*``) on the same calibration heads drawn with the current renderer (about 12
minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .cameras import Camera, camera_center
from .headpose import EYE_CORNERS
from .io import InputError, atomic_path
from .render.rigs import LOOK_AT

log = logging.getLogger(__name__)

TEMPLATE_YAWS = (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0)
TEMPLATE_POSES = [(y, p) for y in TEMPLATE_YAWS for p in (-25.0, 0.0, 25.0)]
TEMPLATE_SEEDS = (3, 11, 27, 41, 58, 77)
TEMPLATE_TOL_M = 0.005
# the pose correction is calibrated on random ICT identities with their sampled skin and hair, never the mean head
# the tests measure pose on (so those renders are held out by geometry and appearance alike)
CALIBRATION_SEEDS = tuple(range(9000, 9080))
CALIBRATION_VIEWS = 36  # random views per calibration head (each also used mirrored)
CALIBRATION_EXPRESSIONS, CALIBRATION_EXPRESSION_WEIGHT = 3, 0.8  # up to this many blendshapes at up to this weight
CALIBRATION_RIDGE = 1e-3  # chosen by 5-fold cross-validation over the calibration heads


def build_template(model: Any, assets: Any, res: int = 384, seeds: tuple[int, ...] = TEMPLATE_SEEDS) -> dict[str, Any]:
    """Derive the face-mesh -> ICT table from renders of random ICT identities (see module doc)."""
    from scipy.spatial import cKDTree

    from .cameras import intrinsics_from_focal_mm, orbit_camera, unproject
    from .face import face_landmarks, mesh_index_groups
    from .hair import HairParams
    from .heads import HeadSpec, build_head
    from .render import HeadRenderer, Lighting

    groups = mesh_index_groups()
    excluded = groups["lips"] | groups["irises"] | groups["face_oval"] | groups["left_eye"] | groups["right_eye"]
    excluded -= set(EYE_CORNERS) | {133, 362}  # eye corners are rigid and well localised: keep them
    face_verts = np.unique(model.faces[model.face_mask(("M_Face",))])
    mean_v = model.vertices().astype(np.float64)
    lifted, centres, yaws = [], [], []  # per view: (478, 3) landmarks carried over to the mean head (nan: not on skin); camera
    for seed in seeds:
        spec = HeadSpec.sample(model, seed, assets)  # only its appearance is used: identity, hair, beard are fixed below
        spec.identity[:] = 0.0  # the mean head: identity modes also tilt the face by degrees (see module doc)
        spec.expression[:] = 0.0
        spec.accessories = []
        spec.hair = HairParams.sample(np.random.default_rng(seed), color=spec.appearance.hair_color, style="buzz")
        spec.appearance.beard = "none"
        asset = build_head(model, spec, 256)
        verts = model.vertices(spec.identity).astype(np.float64)
        tree = cKDTree(verts[face_verts])
        # eye corners hit the eyeball or lashes: count those parts too (points are snapped to face skin below)
        skin_parts = [i for i, p in enumerate(asset.parts) if p.name in ("skin", "eyes", "eyelashes")]
        r = HeadRenderer(asset)
        for yaw, pitch in TEMPLATE_POSES:
            cam = Camera(orbit_camera(yaw, pitch, 0.8, LOOK_AT), intrinsics_from_focal_mm(60.0, res, res), res, res)
            out = r.render(cam, Lighting(shadows=False), supersample=2)
            try:
                lm = face_landmarks(out.rgb, f"template render seed {seed} yaw {yaw} pitch {pitch}")
            except InputError as e:
                log.info("skipped: %s", e)
                continue
            ij = np.clip(np.floor(lm.uv).astype(int), 0, res - 1)
            depth = out.depth[ij[:, 1], ij[:, 0]]
            on_skin = np.isin(out.part[ij[:, 1], ij[:, 0]], skin_parts) & (depth > 0)
            dist, j = tree.query(unproject(lm.uv, depth, cam.w2c, cam.K))
            p3 = mean_v[face_verts[j]]  # the same surface point on the mean head (identity removed)
            p3[~on_skin | (dist > 0.004)] = np.nan
            lifted.append(p3)
            centres.append(camera_center(cam.w2c))
            yaws.append(yaw)
    P = np.stack(lifted)  # (views, 478, 3)
    # judge each landmark only in the views that see its surface point (hidden ones are guesses)
    import trimesh

    normals = trimesh.Trimesh(mean_v, model.faces, process=False).vertex_normals
    _, j0 = cKDTree(mean_v[face_verts]).query(np.nan_to_num(np.nanmedian(P, axis=0)))
    v0 = face_verts[j0]
    to_cam = np.stack(centres)[:, None, :] - mean_v[v0][None]
    facing = np.einsum("vld,ld->vl", to_cam / np.linalg.norm(to_cam, axis=-1, keepdims=True), normals[v0]) > 0.25
    P[~facing] = np.nan
    med = np.nanmedian(P, axis=0)
    # mediapipe's points slide a few mm with viewpoint and identity: judge each by its 80th-percentile deviation
    spread = np.nanpercentile(np.linalg.norm(P - med[None], axis=-1), 80, axis=0)
    seen = (np.isfinite(P[..., 0]).sum(0) >= 0.8 * facing.sum(0)) & (facing.mean(0) > 0.3)
    # the lips move with every expression: leave out whatever lands inside the (enlarged) outer lip contour
    lip = mean_v[model.landmarks[48:60]]
    c, half = lip.mean(0), (lip.max(0) - lip.min(0)) / 2 * np.array([1.25, 1.6, 1.0])
    in_lips = (((np.nan_to_num(med) - c)[:, :2] / half[:2]) ** 2).sum(1) < 1.0
    keep = [i for i in range(478) if seen[i] and spread[i] < TEMPLATE_TOL_M and i not in excluded and not in_lips[i]]
    dist, j = cKDTree(mean_v[face_verts]).query(med[keep])
    ict_v = face_verts[j]
    log.info("template: %d renders, %d of 478 landmarks kept; median snap distance %.2f mm", len(P), len(keep),
             1000 * np.median(dist))
    # where each landmark sits as a function of yaw (mediapipe's points slide as the face turns away)
    yaws = np.asarray(yaws)
    by_yaw = []
    for y in TEMPLATE_YAWS:
        Pb = P[yaws == y][:, keep]
        ok = np.isfinite(Pb[..., 0]).sum(0) >= 3
        with np.errstate(all="ignore"):
            mb = np.nanmedian(Pb, axis=0) if ok.any() else np.zeros((len(keep), 3))
        by_yaw.append(np.where(ok[:, None], mb, mean_v[ict_v]))
    return {"mp_index": [int(i) for i in keep], "ict_vertex": [int(v) for v in ict_v],
            "points": mean_v[ict_v].round(6).tolist(), "yaws": list(TEMPLATE_YAWS),
            "points_by_yaw": np.round(np.stack(by_yaw), 6).tolist(),
            "spread_mm": (1000 * spread[keep]).round(2).tolist(), "snap_mm": (1000 * dist).round(2).tolist()}


def calibration_samples(model: Any, assets: Any, seeds: tuple[int, ...] = CALIBRATION_SEEDS, views: int = CALIBRATION_VIEWS,
                        res: int = 384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renders of random identities with random expressions (``model`` needs its expression blendshapes) at
    random known poses (yaw +-70, pitch +-30, 35-85 mm at the distance that keeps the head's size), each also
    mirrored (the face mesh run on the flipped image, the pose mirrored): the correction features of the
    uncorrected fit, the rotation that takes it to the true pose (head frame rotation vector) and the true yaw
    of every view."""
    from scipy.spatial.transform import Rotation

    from .cameras import intrinsics_from_focal_mm, orbit_camera
    from .face import face_landmarks
    from .headpose import correction_features, fit_template
    from .heads import HeadSpec, build_head
    from .render import HeadRenderer, Lighting

    S = np.diag([-1.0, 1.0, 1.0, 1.0])  # mirror x: head frame and camera frame alike
    X, Y, yaws = [], [], []
    for seed in seeds:
        spec = HeadSpec.sample(model, seed, assets)
        rng = np.random.default_rng(seed)
        # expressions move the landmarks the correction reads: calibrate on stronger ones than the training data's
        spec.expression = model.sample_expression(rng, max_active=CALIBRATION_EXPRESSIONS, max_weight=CALIBRATION_EXPRESSION_WEIGHT)
        spec.accessories = []
        r = HeadRenderer(build_head(model, spec, 256))
        for _ in range(views):
            yaw, pitch, focal = rng.uniform(-70, 70), rng.uniform(-30, 30), rng.uniform(35, 85)
            cam = Camera(orbit_camera(yaw, pitch, 0.8 * focal / 60.0, LOOK_AT), intrinsics_from_focal_mm(focal, res, res), res, res)
            rgb = r.render(cam, Lighting(shadows=False)).rgb
            for mirrored in (False, True):
                img, w2c_true = (np.ascontiguousarray(rgb[:, ::-1]), S @ cam.w2c @ S) if mirrored else (rgb, cam.w2c)
                try:
                    uv = face_landmarks(img, f"calibration render seed {seed} yaw {yaw:.0f}").uv
                    w2c, use = fit_template(uv, cam.K)
                except InputError as e:
                    log.info("skipped: %s", e)
                    continue
                X.append(correction_features(uv, cam.K, w2c, use))
                Y.append(Rotation.from_matrix((np.linalg.inv(w2c) @ w2c_true)[:3, :3]).as_rotvec())
                yaws.append(yaw * (-1 if mirrored else 1))
        log.info("calibration head %d: %d samples so far", seed, len(X))
    return np.asarray(X), np.asarray(Y), np.asarray(yaws)


def fit_correction(X: np.ndarray, Y: np.ndarray, ridge: float = CALIBRATION_RIDGE) -> dict[str, Any]:
    """Ridge regression of the correction (rotation vector) on the standardised features
    (:func:`anyhead.headpose.standardise`). The largest calibration correction bounds the correction at run time."""
    from .headpose import standardise

    mu = np.nanmean(X, axis=0)
    sd = np.nanstd(X, axis=0) + 1e-9
    mu[0], sd[0] = 0.0, 1.0  # the constant term
    Xn = standardise(X, mu, sd)
    reg = ridge * len(X) * np.eye(X.shape[1])
    reg[0, 0] = 0.0
    coef = np.linalg.solve(Xn.T @ Xn + reg, Xn.T @ Y)
    return {"mean": mu, "scale": sd, "coef": coef, "max_deg": float(np.degrees(np.linalg.norm(Y, axis=1).max())),
            "samples": len(X), "ridge": ridge}


def write_template_module(table: dict[str, Any], path: str | Path) -> None:
    """Write the table as a Python module (so it ships with the package without data-file setup)."""
    lines = ['"""Generated by `python -m anyhead.build_face_template`; do not edit (see anyhead/headpose.py).',
             "",
             "Mediapipe face-mesh index -> ICT FaceKit vertex -> that vertex on the ICT mean head (head frame, metres).",
             f"{len(table['mp_index'])} landmarks; render-consistency spread and snap distance to the vertex in mm.",
             '"""', "# ruff: noqa: E501", "# fmt: off",
             f"MP_INDEX = {tuple(table['mp_index'])!r}",
             f"ICT_VERTEX = {tuple(table['ict_vertex'])!r}",
             "POINTS = (",
             *[f"    ({x!r}, {y!r}, {z!r})," for x, y, z in table["points"]],
             ")",
             f"YAWS = {tuple(table['yaws'])!r}",
             "# POINTS_BY_YAW[b][i]: where landmark i is seen on the mean head when the camera is at yaw YAWS[b]",
             "POINTS_BY_YAW = (",
             *["    (" + ", ".join(f"({x!r}, {y!r}, {z!r})" for x, y, z in pts) + ")," for pts in table["points_by_yaw"]],
             ")",
             f"SPREAD_MM = {tuple(table['spread_mm'])!r}",
             f"SNAP_MM = {tuple(table['snap_mm'])!r}",
             ""]
    def g(a: np.ndarray) -> str:
        return "(" + ", ".join(f"{float(v):.5g}" for v in a) + ")"

    for key, name, what in (("correction", "CORRECTION", "pose correction (anyhead.headpose.pose_correction)"),
                            ("correction_turned", "CORRECTION_TURNED", "correction of turned faces, current renderer's look")):
        c = table.get(key)
        if c is None:
            continue
        lines[-1:] = [
            f"# {what}: ridge regression (ridge {c['ridge']:g}) on {c['samples']}",
            f"# renders of {len(CALIBRATION_SEEDS)} random identities (seeds {CALIBRATION_SEEDS[0]}-{CALIBRATION_SEEDS[-1]}), "
            "mirrored ones included",
            f"{name}_MEAN = {g(c['mean'])}",
            f"{name}_SCALE = {g(c['scale'])}",
            f"{name}_COEF = (",
            *[f"    {g(row)}," for row in c["coef"]],
            ")",
            f"{name}_MAX_DEG = {c['max_deg']:.1f}",
            ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def table_from_module() -> dict[str, Any]:
    """The installed table (:mod:`anyhead.face_template`) as :func:`write_template_module` takes it."""
    from . import face_template as t

    table: dict[str, Any] = {"mp_index": list(t.MP_INDEX), "ict_vertex": list(t.ICT_VERTEX), "points": [list(p) for p in t.POINTS],
                             "yaws": list(t.YAWS), "points_by_yaw": np.asarray(t.POINTS_BY_YAW).tolist(),
                             "spread_mm": list(t.SPREAD_MM), "snap_mm": list(t.SNAP_MM)}
    for key, name in (("correction", "CORRECTION"), ("correction_turned", "CORRECTION_TURNED")):
        if hasattr(t, f"{name}_COEF"):
            head = Path(t.__file__).read_text().split(f"{name}_MEAN")[0].splitlines()[-2]  # "# ...: ridge regression (ridge R) on N"
            table[key] = {"mean": np.asarray(getattr(t, f"{name}_MEAN")), "scale": np.asarray(getattr(t, f"{name}_SCALE")),
                          "coef": np.asarray(getattr(t, f"{name}_COEF")), "max_deg": float(getattr(t, f"{name}_MAX_DEG")),
                          "ridge": float(head.split("(ridge ")[1].split(")")[0]), "samples": int(head.split()[-1])}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the face-mesh -> ICT template table (needs the ICT archive)")
    ap.add_argument("--ict-archive", default="../shared/ict-facekit/ICT-FaceKit-da5f95a.tar.gz")
    ap.add_argument("--cache", default=".cache")
    ap.add_argument("--out", default=str(Path(__file__).with_name("face_template.py")))
    ap.add_argument("--params", default="params.yaml", help="its base `assets` section samples the skin appearance")
    ap.add_argument("--turned-only", action="store_true",
                    help="keep the installed template and near-frontal correction, refit only the turned-face correction")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    import importlib

    from . import face_template, ict
    from .config import AssetsConfig, read_params

    assets = read_params(args.params, "default").section(AssetsConfig, "assets")
    folder = ict.extract_archive(args.ict_archive, args.cache)
    if args.turned_only:
        table = table_from_module()
        X, Y, _ = calibration_samples(ict.ICTModel.from_folder(folder), assets)
        table["correction_turned"] = fit_correction(X, Y)
        write_template_module(table, args.out)
        log.info("wrote %s (turned-face correction only)", args.out)
        return
    model = ict.ICTModel.from_folder(folder, with_expressions=False)
    table = build_template(model, assets)
    # the correction's features are computed against the table's points: make the new ones the module's first
    write_template_module(table, args.out)
    if Path(args.out).resolve() == Path(face_template.__file__).resolve():
        importlib.reload(face_template)
    else:
        log.warning("--out is not the package's table: the correction is calibrated against the installed table's points")
    X, Y, _ = calibration_samples(ict.ICTModel.from_folder(folder), assets)
    table["correction"] = fit_correction(X, Y)
    write_template_module(table, args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
