"""Products already on disk under `settings.local_path` (INGESTER_LOCAL_PATH), in one of the layouts
`{YEAR}/{MONTH}/{DAY}/{SCENE}.zip`, `{SCENE}.zip`, `{SCENE}.SAFE/` (also `{YEAR}/{MONTH}/{DAY}/{SCENE}.SAFE/`
and `{SCENE}/` for products that are plain folders, e.g. Landsat). The product is copied (hard-linked
when possible) into the work directory and, when the catalogue published a size or checksum, verified."""

from __future__ import annotations

import os
from pathlib import Path

from ingester.config import Settings
from ingester.errors import NotFound
from ingester.http.checksums import verify_file
from ingester.naming import NameError_, product_keys
from ingester.providers.base import Provider, expected_from_metadata, place_local, product_name
from ingester.scenes import Scene

LAYOUTS = ("{YEAR}/{MONTH}/{DAY}/{SCENE}.zip", "{SCENE}.zip", "{YEAR}/{MONTH}/{DAY}/{SCENE}.SAFE",
           "{SCENE}.SAFE", "{SCENE}")


def candidates(root: Path, scene_id: str) -> list[Path]:
    """The paths where the local archive may hold the scene, in the order they are tried."""
    try:
        keys = product_keys(scene_id)
    except NameError_:
        keys = {"SCENE": scene_id}
    out = []
    for layout in LAYOUTS:
        try:
            out.append(root / layout.format(**keys))
        except KeyError:  # no date in the name
            continue
    return out


class LocalProvider(Provider):
    name = "local"

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.local_path)

    def may_have(self, scene: Scene) -> bool:
        return bool(self.settings.local_path)

    def fetch(self, scene: Scene, workdir: Path) -> Path:
        name = product_name(scene)
        if not self.settings.local_path:
            raise NotFound("local: INGESTER_LOCAL_PATH is not set")
        root = Path(os.path.expanduser(self.settings.local_path))
        tried = candidates(root, name)
        for path in tried:
            if path.is_file() or (path.is_dir() and path.suffix != ".zip"):
                target = _link_or_copy(path, workdir)
                if target.is_file():
                    try:
                        self.verified[str(target)] = verify_file(target, expected_from_metadata(scene.metadata))
                    except Exception:
                        target.unlink(missing_ok=True)
                        raise
                return target
        raise NotFound(f"local: not in {root} (tried {', '.join(str(p.relative_to(root)) for p in tried)})")


def _link_or_copy(source: Path, workdir: Path) -> Path:
    if source.is_file():
        target = workdir / source.name
        try:
            os.link(source, target)
            return target
        except OSError:
            pass
    return place_local(source, workdir)
