"""Screenshots of the Dagster UI for the README ("Operating imgsearch"), end to end and rerunnable.

    .venv/bin/python scripts/ui_screenshots.py --out docs/screenshots

Assumes `imgsearch stack up` has been run. Steps:

1. The demo catalogue: when the bucket holds no catalogue images, `imgsearch demo --no-serve` (default settings)
   uploads and ingests it; otherwise the catalogue there is reused.
2. A Dagster webserver on the local stack's instance ($DAGSTER_HOME in the state folder, Postgres storage), on a
   free port. Partitions that are stale or missing for the current model version are ingested (the normal
   vocabulary) and asset checks without a result for their asset's latest materialization are run. Then:
   - dagster-asset-graph.png: the asset graph, groups expanded;
   - dagster-partition-metadata.png: the image_attributes materialization that analysed the most images
     (analysed/failed, model_version, seconds per image, the preview table);
   - dagster-partition-inventory.png: the image_inventory materialization of the same run (new/changed/...);
   - dagster-partition-search-index.png: the latest search_index materialization of that partition (index,
     alias, link to the search page);
   - dagster-asset-checks.png: the checks tab of the asset with the most checks, if checks are registered.
3. The webserver again, with IMGSEARCH_VOCAB_DIR pointing at a temporary copy of the vocabulary with one added
   synonym: a new vocabulary version, so a new model_version and code version for the analysis assets.
   - dagster-stale-after-upgrade.png: that partition of image_attributes "Unsynced", with its cause (a new code
     version) open.

Only the webserver runs, never the daemon: no sensor, schedule or automation tick can happen, so the temporary
vocabulary never reprocesses anything (and runs queued in the instance by others stay as they are). Should model
assets nevertheless have been materialized during step 3, those partitions are materialized again with the
normal vocabulary. Every process started here runs in its own process group and is stopped on exit, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import yaml
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from imgsearch_pipeline import config
from imgsearch_pipeline.stack.dagster_home import REPO_ROOT, apply, dagster_env
from imgsearch_pipeline.stack.process import free_port, stop_group, wait_for_port

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
SIZE = (1400, 900)
# The analysis assets: their code version is the provider's model_version.
MODEL_ASSETS = ("image_attributes", "image_analysis", "search_index")
ALL_ASSETS = ("image_inventory", "image_embeddings", *MODEL_ASSETS)
# The "upgrade": one synonym more for one colour (file, entry id, synonym) in a copy of the vocabulary.
UPGRADE = ("colors", "teal", "seafoam")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(msg, flush=True)


# --- Dagster webserver ------------------------------------------------------------------------------------------


class Webserver:
    """`dagster-webserver` for the workspace in its own process group; the context manager stops the group."""

    def __init__(self, env: dict[str, str], logfile: Path) -> None:
        self.env = env
        self.logfile = logfile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Webserver:
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            if not wait_for_port(self.port, timeout=180):
                raise RuntimeError(f"dagster-webserver did not listen on {self.port}:\n{self.log_tail()}")
            self._wait_for_code_location()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.logfile.read_text(errors="replace")[-chars:] if self.logfile.exists() else ""

    def gql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"GraphQL {e.code}: {e.read().decode(errors='replace')[:1000]}") from e
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def _wait_for_code_location(self, timeout: float = 180) -> None:
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited:\n{self.log_tail()}")
            entries = self.gql(query)["workspaceOrError"].get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e["locationOrLoadError"] for e in entries
                          if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                if errors:
                    raise RuntimeError(f"the code location failed to load: {errors}")
                return
            time.sleep(1)
        raise RuntimeError("the code location did not load in time")

    # Queries the script relies on -------------------------------------------------------------------------------

    def stale_statuses(self, asset: str, partitions: list[str]) -> dict[str, str]:
        query = """query($key: AssetKeyInput!, $ps: [String!]!) { assetNodeOrError(assetKey: $key) {
            ... on AssetNode { staleStatusByPartition(partitions: $ps) } } }"""
        node = self.gql(query, {"key": {"path": [asset]}, "ps": partitions})["assetNodeOrError"]
        return dict(zip(partitions, node["staleStatusByPartition"], strict=True))

    def stale_causes(self, asset: str, partition: str) -> list[str]:
        query = """query($key: AssetKeyInput!, $p: String) { assetNodeOrError(assetKey: $key) {
            ... on AssetNode { staleCauses(partition: $p) { reason category } } } }"""
        node = self.gql(query, {"key": {"path": [asset]}, "p": partition})["assetNodeOrError"]
        return [f"{c['category']}: {c['reason']}" for c in node["staleCauses"]]

    def op_version(self, asset: str) -> str | None:
        query = "query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode { opVersion } } }"
        return self.gql(query, {"key": {"path": [asset]}})["assetNodeOrError"]["opVersion"]

    def checks(self, assets: list[str]) -> list[dict]:
        """Every check on these assets: name, asset, jobs, and whether it ran for the latest materialization."""
        query = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
            assetChecksOrError { ... on AssetChecks { checks {
                name jobNames executionForLatestMaterialization { status } } } } } } }"""
        out = []
        for asset in assets:
            node = self.gql(query, {"key": {"path": [asset]}})["assetNodeOrError"]
            for check in (node.get("assetChecksOrError") or {}).get("checks") or []:
                execution = check["executionForLatestMaterialization"]
                out.append({"asset": asset, "name": check["name"], "jobs": check["jobNames"],
                            "status": execution["status"] if execution else None})
        return out


# --- Browser --------------------------------------------------------------------------------------------------


class Shooter:
    """One headless chromium; every screenshot gets a fresh page of SIZE pixels."""

    def __init__(self, playwright, out: Path) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
                                                  args=LAUNCH_ARGS, timeout=60_000)
        self.out = out
        self.captured: list[tuple[Path, str]] = []

    def close(self) -> None:
        self.browser.close()

    def open(self, url: str, ready_text: str, scale: float = 1.0):
        """A page at `url` once `ready_text` shows, first-visit modal closed and the left navigation hidden.

        `scale` < 1 lays the page out in a larger window and renders it smaller (like browser zoom), so a wide
        table fits into the same SIZE pixels.
        """
        context = self.browser.new_context(viewport={"width": round(SIZE[0] / scale), "height": round(SIZE[1] / scale)},
                                           device_scale_factor=scale)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text(ready_text).first.wait_for()
        self._dismiss_modals(page)
        hide = page.get_by_role("button", name="Hide navigation")
        if hide.count() and hide.first.is_visible():
            hide.first.click()
        with contextlib.suppress(PlaywrightTimeout):  # the UI polls; quiet enough is enough
            page.wait_for_load_state("networkidle", timeout=15_000)
        time.sleep(1.0)
        return page

    @staticmethod
    def _dismiss_modals(page) -> None:
        """Dagster's "Join the Dagster community" dialog (first visit of an instance): Skip."""
        dialog = page.get_by_role("dialog")
        try:
            dialog.first.wait_for(state="visible", timeout=4000)
        except PlaywrightTimeout:  # no dialog: the normal case once the instance has seen a visit
            return
        for name in ("Skip", "Close", "Dismiss", "Done"):
            button = dialog.get_by_role("button", name=name)
            if button.count():
                button.first.click()
                break
        else:
            page.keyboard.press("Escape")
        dialog.first.wait_for(state="hidden", timeout=10_000)

    def save(self, page, name: str, what: str, expect: list[str]) -> None:
        for text in expect:
            if not page.get_by_text(text).filter(visible=True).count():
                raise RuntimeError(f"{name}: expected {text!r} on the page, it is not visible")
        dialogs = [d for d in page.get_by_role("dialog").all() if d.is_visible()]
        if dialogs:
            raise RuntimeError(f"{name}: a dialog is still open: {dialogs[0].inner_text()[:200]!r}")
        path = self.out / name
        page.screenshot(path=str(path))
        page.context.close()
        self.captured.append((path, what))
        log(f"  captured {path}: {what}")


def park_mouse(page) -> None:
    """Away from lists and tables, so no row shows a hover highlight."""
    viewport = page.viewport_size
    page.mouse.move(viewport["width"] // 2, 4)
    time.sleep(0.3)


def shoot_asset_graph(shooter: Shooter, ui: str) -> None:
    page = shooter.open(f"{ui}/asset-groups", ready_text="Global asset lineage")
    page.get_by_text("ingest", exact=True).first.wait_for()
    # Graph settings (the gear under the zoom controls): expand every group, so each asset is a node.
    page.locator('button:has([aria-label="settings"])').last.click()
    expand = page.get_by_role("menuitem", name="Expand all groups")
    expand.wait_for()
    expand.click()
    page.keyboard.press("Escape")
    # Close the asset tree left of the graph (its toggle, not the one of the main navigation).
    sidebar_toggle = page.locator('button:not([class*="MainNavigation"]):has([aria-label^="panel_show"])').first
    jump = page.get_by_placeholder("Jump to…")
    if jump.count() and jump.first.is_visible():
        sidebar_toggle.click()
        jump.first.wait_for(state="detached")
    time.sleep(1.0)
    toggle = sidebar_toggle.bounding_box()
    viewport = page.viewport_size
    canvas = (toggle["x"] - 12, toggle["y"] + toggle["height"] + 12, viewport["width"], viewport["height"])
    center = ((canvas[0] + canvas[2]) / 2, (canvas[1] + canvas[3]) / 2)
    # Zoom in until the nodes show their details (latest event, checks, partitions, automation).
    for _ in range(30):
        if page.get_by_text("Latest event").count():
            break
        page.mouse.move(*center)
        page.keyboard.down("Control")
        page.mouse.wheel(0, -25)
        page.keyboard.up("Control")
        time.sleep(0.4)
    else:
        raise RuntimeError("asset graph: the nodes never showed their details")
    time.sleep(1.0)
    # Centre the graph (the largest <svg>, which the viewport transforms) in the canvas left of the zoom controls.
    svgs = [b for b in (svg.bounding_box() for svg in page.locator("svg").all()) if b]
    graph = max(svgs, key=lambda b: b["width"] * b["height"])
    target = ((canvas[0] + canvas[2] - 60) / 2, center[1])
    dx, dy = target[0] - (graph["x"] + graph["width"] / 2), target[1] - (graph["y"] + graph["height"] / 2)
    start = (canvas[0] + 20, canvas[1] + 20)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + dx, start[1] + dy, steps=15)
    page.mouse.up()
    park_mouse(page)
    time.sleep(1.0)
    shooter.save(page, "dagster-asset-graph.png",
                 "asset graph: ingest -> analysis -> search groups, partitions, checks and automation per asset",
                 expect=[*ALL_ASSETS, "Latest event"])


def event_url(ui: str, asset: str, partition: str, timestamp: float) -> str:
    """The asset's events tab, filtered to the partition (the unfiltered list loads only the newest events),
    with the event at `timestamp` selected."""
    return (f"{ui}/assets/{asset}?view=events&partitions%5B0%5D={quote(partition, safe='')}"
            f"&type%5B0%5D=Materialization&time={int(timestamp * 1000)}")


def shoot_event(shooter: Shooter, ui: str, asset: str, record, name: str, what: str, expect: list[str],
                scale: float = 1.0) -> None:
    partition = record.asset_materialization.partition
    page = shooter.open(event_url(ui, asset, partition, record.timestamp), ready_text="Metadata", scale=scale)
    page.get_by_role("link", name=record.run_id[:8]).first.wait_for()
    park_mouse(page)
    shooter.save(page, name, what, expect=[partition, *expect])


def shoot_checks(shooter: Shooter, ui: str, asset: str, names: list[str]) -> None:
    page = shooter.open(f"{ui}/assets/{asset}?view=checks", ready_text="Latest execution")
    page.get_by_text("Evaluation result").first.wait_for()
    park_mouse(page)
    shooter.save(page, "dagster-asset-checks.png", f"asset checks tab of {asset}: {', '.join(names)}",
                 expect=names)


def shoot_stale(shooter: Shooter, ui: str, asset: str, partition: str) -> None:
    url = f"{ui}/assets/{asset}?view=partitions&partition={quote(partition, safe='')}"
    page = shooter.open(url, ready_text="Latest materialization")
    tag = page.get_by_text("Unsynced").first
    tag.wait_for()
    tag.hover()
    page.get_by_text("has a new code version").first.wait_for()
    time.sleep(0.8)
    shooter.save(page, "dagster-stale-after-upgrade.png",
                 f"{asset} partition {partition} unsynced after the vocabulary upgrade (new code version)",
                 expect=[partition, "code version change"])


# --- Data and instance ----------------------------------------------------------------------------------------


@dataclass
class Target:
    """The run whose materializations the metadata screenshots show."""

    partition: str
    attributes: object  # EventLogRecord of image_attributes
    inventory: object | None
    index: object | None


def catalogue_partitions(defs) -> list[str]:
    from imgsearch_pipeline.storage.s3 import list_objects

    images = defs.resources["images"]
    client = images.client()
    try:
        keys = [o.key for o in list_objects(client, images.bucket, images.root_prefix)]
    except client.exceptions.NoSuchBucket:
        keys = []
    return sorted({p for k in keys if (p := images.partition_of(k))})


def ensure_catalogue(defs) -> list[str]:
    partitions = catalogue_partitions(defs)
    if partitions:
        log(f"== demo catalogue: {len(partitions)} partitions in s3://{defs.resources['images'].bucket}, reused")
        return partitions
    log("== no catalogue images in the bucket: `imgsearch demo --no-serve` (default settings)")
    subprocess.run([str(BIN / "imgsearch"), "demo", "--no-serve"], check=True, cwd=REPO_ROOT)
    partitions = catalogue_partitions(defs)
    if not partitions:
        raise RuntimeError("the demo left no catalogue images in the bucket")
    return partitions


def refresh_partitions(server: Webserver, partitions: list[str]) -> None:
    """Ingest the partitions that are not FRESH for the current model version (stale or never materialized)."""
    from imgsearch_pipeline.cli import ingest

    todo: set[str] = set()
    for asset in ("image_inventory", *MODEL_ASSETS):
        todo |= {p for p, status in server.stale_statuses(asset, partitions).items() if status != "FRESH"}
    if todo:
        log(f"== ingesting {len(todo)} partitions not fresh for the current model version")
        ingest(sorted(todo))
    else:
        log(f"== all {len(partitions)} partitions fresh for {server.op_version('image_attributes')}")


def pick_target(instance) -> Target:
    """The image_attributes materialization that analysed the most images, and the events shown beside it."""
    from dagster import AssetKey, AssetRecordsFilter

    def count(record) -> float:
        meta = record.asset_materialization.metadata
        return sum(float(getattr(meta.get(k), "value", 0) or 0) for k in ("analysed", "failed"))

    records = instance.fetch_materializations(AssetKey("image_attributes"), limit=5000).records
    if not records:
        raise RuntimeError("image_attributes has no materialization")
    best = max(records, key=lambda r: (count(r), r.storage_id))
    partition = best.asset_materialization.partition

    def sibling(asset: str, same_run: bool):
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=500).records
        of_run = [r for r in found if r.run_id == best.run_id] if same_run else []
        return of_run[0] if of_run else (found[0] if found else None)

    # The inventory of the same run (its new/changed counts go with the analysis); the index's latest event (the
    # state the search serves: index, alias, link to the search page).
    return Target(partition, best, sibling("image_inventory", same_run=True), sibling("search_index", same_run=False))


def ensure_check_results(server: Webserver, defs, instance, partition: str) -> list[dict]:
    """Run the checks that have no result for their asset's latest materialization: the partition checks through
    an ingest of `partition`, whole-catalogue checks through their own (unpartitioned, checks-only) job."""
    from imgsearch_pipeline.cli import ingest

    checks = server.checks(list(ALL_ASSETS))
    if any(c["status"] is None and "ingest_partition" in c["jobs"] for c in checks):
        log(f"== running the partition checks: ingest {partition}")
        ingest([partition])
        checks = server.checks(list(ALL_ASSETS))
    jobs = sorted({j for c in checks if c["status"] is None for j in c["jobs"]})
    for name in jobs:
        job = defs.resolve_job_def(name)
        if job.partitions_def is None and not job.asset_layer.selected_asset_keys:
            log(f"== running the checks-only job {name}")
            job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    return server.checks(list(ALL_ASSETS))


def upgraded_vocabulary(directory: Path) -> tuple[str, str]:
    """Copy the vocabulary into `directory` with one added synonym; returns (old, new) vocabulary versions."""
    from imgsearch_pipeline.vocab import default_vocab_dir, load_vocabulary

    source = default_vocab_dir()
    shutil.copytree(source, directory, dirs_exist_ok=True)
    filename, entry_id, synonym = UPGRADE
    path = directory / f"{filename}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    entry = next(e for e in data[filename] if e["id"] == entry_id)
    if synonym in entry.get("synonyms", []):
        raise RuntimeError(f"{synonym!r} is already a synonym of {entry_id!r}: pick another UPGRADE")
    entry["synonyms"] = [*entry.get("synonyms", []), synonym]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    old, new = load_vocabulary(source).version, load_vocabulary(directory).version
    if old == new:
        raise RuntimeError("the upgraded vocabulary has the same version")
    return old, new


def restore_if_reprocessed(instance, since: float) -> None:
    """Materialize again, with the normal vocabulary, any model asset partition materialized after `since`."""
    from dagster import AssetKey, AssetRecordsFilter

    from imgsearch_pipeline.cli import ingest

    touched = set()
    for asset in MODEL_ASSETS:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), after_timestamp=since), limit=5000).records
        touched |= {r.asset_materialization.partition for r in records if r.asset_materialization.partition}
    if touched:
        log(f"!! {len(touched)} partitions were materialized under the temporary vocabulary: restoring them")
        ingest(sorted(touched))


# --- Main -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def shooting(out: Path, captured: list[tuple[Path, str]]):
    """A Shooter for a batch of screenshots. Playwright runs only here: the ingest and check runs of this process
    happen outside it (Dagster's in-process execution and Playwright's event loop do not share a thread well)."""
    with sync_playwright() as pw:
        shooter = Shooter(pw, out)
        try:
            yield shooter
        finally:
            captured.extend(shooter.captured)
            shooter.close()


def run(out: Path) -> list[tuple[Path, str]]:
    from dagster import BetaWarning, DagsterInstance, PreviewWarning

    for category in (BetaWarning, PreviewWarning):
        warnings.filterwarnings("ignore", category=category)

    from imgsearch_pipeline.definitions import build_definitions

    settings = config.load_settings()
    env = dagster_env(config.state_dir(), settings.require("postgres_dsn"))
    apply(env)  # this process (ingest, checks) uses the same instance as the webserver
    instance = DagsterInstance.get()
    defs = build_definitions(settings)
    partitions = ensure_catalogue(defs)
    out.mkdir(parents=True, exist_ok=True)
    captured: list[tuple[Path, str]] = []

    with tempfile.TemporaryDirectory(prefix="imgsearch-ui-") as tmp:
        tmp_dir = Path(tmp)
        log("== webserver with the normal vocabulary")
        with Webserver(os.environ | env, tmp_dir / "webserver.log") as server:
            refresh_partitions(server, partitions)
            target = pick_target(instance)
            part = target.partition
            checks = ensure_check_results(server, defs, instance, part)
            log(f"== screenshots (partition {part}, run {target.attributes.run_id[:8]})")
            with shooting(out, captured) as shooter:
                shoot_asset_graph(shooter, server.url)
                shoot_event(shooter, server.url, "image_attributes", target.attributes,
                            "dagster-partition-metadata.png",
                            f"image_attributes materialization of {part}: analysed/failed, seconds per image, preview",
                            expect=["analysed", "seconds_per_image", "preview"], scale=0.8)
                if target.inventory is not None:
                    shoot_event(shooter, server.url, "image_inventory", target.inventory,
                                "dagster-partition-inventory.png",
                                f"image_inventory materialization of {part}: listed/new/changed/unchanged/deleted",
                                expect=["new", "changed", "unchanged"])
                if target.index is not None:
                    shoot_event(shooter, server.url, "search_index", target.index,
                                "dagster-partition-search-index.png",
                                f"search_index materialization of {part}: index, alias, link to the search page",
                                expect=["index", "search_page"])
                if checks:
                    by_asset: dict[str, list[str]] = {}
                    for c in checks:
                        by_asset.setdefault(c["asset"], []).append(c["name"])
                    asset = max(by_asset, key=lambda a: len(by_asset[a]))
                    shoot_checks(shooter, server.url, asset, by_asset[asset])
                else:
                    log("  (no asset checks registered in the code location: no checks screenshot)")

        old, new = upgraded_vocabulary(tmp_dir / "vocab")
        log(f"== webserver with a temporary vocabulary: version {old} -> {new} "
            f"({UPGRADE[2]!r} added to {UPGRADE[1]!r}); no daemon, so nothing is reprocessed")
        since = time.time()
        try:
            upgraded_env = os.environ | env | {"IMGSEARCH_VOCAB_DIR": str(tmp_dir / "vocab")}
            with Webserver(upgraded_env, tmp_dir / "webserver-upgraded.log") as server:
                version = server.op_version("image_attributes") or ""
                if not version.endswith(new):
                    raise RuntimeError(f"the code location did not pick up the vocabulary: {version}")
                causes = server.stale_causes("image_attributes", part)
                if not any("new code version" in c for c in causes):
                    raise RuntimeError(f"{part} is not stale by code version: {causes}")
                stale = server.stale_statuses("image_attributes", partitions)
                log(f"  {sum(s == 'STALE' for s in stale.values())}/{len(partitions)} partitions of "
                    f"image_attributes stale ({causes[0]}), code version now {version}")
                with shooting(out, captured) as shooter:
                    shoot_stale(shooter, server.url, "image_attributes", part)
        finally:
            restore_if_reprocessed(instance, since)
    return captured


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the webserver's process group is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        captured = run(args.out.resolve())
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    log(f"\n{len(captured)} screenshots in {args.out}:")
    for path, what in captured:
        log(f"  {path.name:38s} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
