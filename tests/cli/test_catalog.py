"""`featurestore catalog` (README "Catalog") end to end: the command writes the page from
the demo registry with freshness read from a real store's load log, and a real headless
Chromium (one for the module) renders it: every feature, search by name / owner / entity
against an independent filter of the registry, each feature's details and lineage, a
description carrying markup shown as text (nothing runs), and a screenshot."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from featurestore.catalog import build_catalog, write_catalog
from featurestore.online.store import LoadRecord
from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry, registry_from_manifest
from tests.browser import chromium, read_png
from tests.loader.test_load import run_cli
from tests.warehouse import Warehouse

NOW = dt.datetime(2026, 5, 2, 12, 0, 0)

# one worker runs the module: one browser and one build of the catalog
pytestmark = pytest.mark.xdist_group("catalog")


def iso(moment: dt.datetime) -> str:
    return moment.isoformat() + "Z"


class Built:
    """The catalog the command wrote, what the test put in the load log, the manifest."""

    def __init__(self, registry: Registry, manifest: dict[str, Any], page: Path) -> None:
        self.registry = registry
        self.manifest = manifest
        self.page = page
        #: the freshness label each view must show (an independent rule: offline views,
        #: never loaded, loaded within the SLA or past it)
        self.labels: dict[str, str] = {}


@pytest.fixture(scope="module")
def built(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> Built:
    manifest_path = demo_warehouse.target_path / "manifest.json"
    registry = load_registry(manifest_path)
    work = tmp_path_factory.mktemp("catalog")
    url = f"sqlite:///{work / 'store.db'}"
    env = demo_warehouse.env
    assert run_cli("init-store", "--online", url, env=env).returncode == 0
    built = Built(registry, json.loads(manifest_path.read_text()), work / "site" / "index.html")
    online = sorted(name for name, view in registry.views.items() if view.online)
    assert len(online) >= 3, "the test needs a fresh, a stale and a never-loaded view"
    with open_store(url) as store:
        for i, name in enumerate(online[:2]):
            sla = dt.timedelta(seconds=registry.views[name].freshness_sla_seconds)
            as_of = NOW - dt.timedelta(hours=1) if i == 0 else NOW - sla - dt.timedelta(hours=1)
            store.record_load(
                LoadRecord("l", name, store.description, "success", iso(NOW), iso(NOW), None,
                           None, extra={"data_as_of": iso(as_of)})
            )  # fmt: skip
            built.labels[name] = "fresh" if i == 0 else "over SLA"
    for name, view in registry.views.items():
        built.labels.setdefault(name, "never loaded" if view.online else "offline")
    proc = run_cli(
        "catalog", "--out", str(built.page.parent), "--online", url, "--now", iso(NOW), env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [str(built.page), str(built.page.parent / "catalog.json")]
    assert proc.stdout.splitlines() == [f"wrote {path}" for path in written]
    return built


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def open_page(browser: WebDriver, page: Path, fragment: str = "") -> None:
    """A fresh load of the page (a query string makes a new document even when only the
    fragment would differ)."""
    open_page.loads += 1  # type: ignore[attr-defined]
    browser.get(f"{page.as_uri()}?load={open_page.loads}#{fragment}")  # type: ignore[attr-defined]
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"


open_page.loads = 0  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Row:
    """What the page must list for one feature, from the registry: a stored feature (its
    id is its name) or a service's request-time feature (id ``<service>.<name>``)."""

    id: str
    name: str
    type: str
    description: str
    view: str | None
    owner: str
    entities: tuple[str, ...]
    services: tuple[str, ...]


def rows_ref(registry: Registry) -> list[Row]:
    """Every row in page order (name, then id)."""
    used: dict[str, list[str]] = {}
    for service in registry.feature_services.values():
        for name in service.features:
            used.setdefault(name, []).append(service.name)
    rows = [
        Row(f.name, f.name, f.value_type, f.description, f.view, registry.views[f.view].owner,
            (registry.views[f.view].entity.name,), tuple(used.get(f.name, ())))
        for f in registry.features.values()
    ]  # fmt: skip
    for service in registry.feature_services.values():
        for r in service.request_features:
            entities = [registry.view_of(n).entity.name for n in r.expression.features]
            rows.append(
                Row(f"{service.name}.{r.name}", r.name, r.expression.value_type, r.description,
                    None, service.owner, tuple(dict.fromkeys(entities)), (service.name,))
            )  # fmt: skip
    return sorted(rows, key=lambda row: (row.name, row.id))


def visible_features(browser: WebDriver) -> list[str]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#features tbody tr")
    return [str(r.get_attribute("data-feature")) for r in rows if r.is_displayed()]


def errors(browser: WebDriver) -> list[str]:
    """The console's errors (a CSP violation, a script error) since the last call."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_every_feature_is_listed_with_its_freshness(built: Built, browser: WebDriver) -> None:
    open_page(browser, built.page)
    expected = {row.id: row for row in rows_ref(built.registry)}
    assert any(row.view is None for row in expected.values())  # a request-time feature
    assert visible_features(browser) == list(expected)
    total = len(expected)
    assert browser.find_element(By.ID, "count").text == f"{total} of {total} features"
    for tr in browser.find_elements(By.CSS_SELECTOR, "#features tbody tr"):
        row = expected[str(tr.get_attribute("data-feature"))]
        cells = [c.text for c in tr.find_elements(By.TAG_NAME, "td")]
        if row.view is None:
            where, online, badge = f"request time: {row.services[0]}", "computed", "at request"
        else:
            where, badge = row.view, built.labels[row.view]
            online = "yes" if built.registry.views[row.view].online else "no"
        assert cells == [row.name, row.type, ", ".join(row.entities), where, row.owner, online,
                         badge]  # fmt: skip
    assert set(built.labels.values()) >= {"fresh", "over SLA", "never loaded"}
    assert errors(browser) == []


def services_ref(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Feature name -> the feature services listing it, read from the manifest's ``ml``
    exposures."""
    out: dict[str, list[str]] = {}
    for exposure in manifest["exposures"].values():
        declared = (exposure.get("meta") or {}).get("featurestore")
        if exposure.get("type") == "ml" and declared:
            for name in declared["features"]:
                out.setdefault(name, []).append(exposure["name"])
    return out


def reference(
    registry: Registry,
    text: str = "",
    owner: str = "",
    entity: str = "",
    service: str = "",
    using: dict[str, list[str]] | None = None,
) -> list[str]:
    """The README's search rule, from the registry: every word of the box in the feature's
    name, description, view, owner or entities (any case); owner, entity and service (for a
    stored feature from ``using``: feature -> services, read from the manifest) exactly."""
    out = []
    for row in rows_ref(registry):
        haystack = " ".join([row.name, row.description, row.view or "", row.owner, *row.entities])
        services = row.services if row.view is None else (using or {}).get(row.name, [])
        if (
            all(word in haystack.lower() for word in text.lower().split())
            and (not owner or row.owner == owner)
            and (not entity or entity in row.entities)
            and (not service or service in services)
        ):
            out.append(row.id)
    return out


def test_search_by_name_owner_and_entity(built: Built, browser: WebDriver) -> None:
    registry = built.registry
    owners = sorted({v.owner for v in registry.views.values()})
    entities = sorted({v.entity.name for v in registry.views.values()})
    using = services_ref(built.manifest)
    services = sorted({name for names in using.values() for name in names})
    assert len(owners) > 1 and len(entities) > 1 and services
    first = sorted(registry.features)[0]
    cases = [
        {"text": first},  # a whole name
        {"text": "CHARGEBACK"},  # part of names and descriptions, any case
        {"text": "count 7d"},  # every word must match
        {"text": "payment amount"},  # a request-time feature's description
        {"text": owners[0].split("@")[0]},  # an owner, typed
        {"text": "zzz-no-such-feature"},
        *({"owner": owner} for owner in owners),
        *({"entity": entity} for entity in entities),
        *({"service": service} for service in services),
        {"owner": owners[0], "entity": entities[0], "text": "transaction"},
        {"service": services[0], "entity": entities[-1]},
    ]
    for case in cases:
        open_page(browser, built.page)
        if "text" in case:
            browser.find_element(By.ID, "q").send_keys(case["text"])
        for select in ("owner", "entity", "service"):
            if select in case:
                Select(browser.find_element(By.ID, select)).select_by_value(case[select])
        expected = reference(registry, **case, using=using)
        assert visible_features(browser) == expected, case
        count = browser.find_element(By.ID, "count").text
        assert count == f"{len(expected)} of {len(rows_ref(registry))} features", case
        assert browser.find_element(By.ID, "empty").is_displayed() == (not expected), case
    # the search lives in the fragment: reloading the link shows the same list
    state = browser.current_url.split("#", 1)[1]
    open_page(browser, built.page, state)
    assert visible_features(browser) == expected
    assert errors(browser) == []


def raw_sources(manifest: dict[str, Any], view: str) -> set[str]:
    """The dbt sources upstream of a view, walking the manifest's parent_map."""
    start = next(k for k, v in manifest["nodes"].items() if v.get("name") == view)
    seen, todo = set(), [start]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(manifest["parent_map"].get(current, []))
    sources = manifest["sources"]
    return {f"{sources[s]['source_name']}.{sources[s]['name']}" for s in seen if s in sources}


def details(browser: WebDriver) -> dict[str, str]:
    panel = browser.find_element(By.ID, "details")
    terms = [e.text for e in panel.find_elements(By.TAG_NAME, "dt")]
    values = [e.text for e in panel.find_elements(By.TAG_NAME, "dd")]
    return dict(zip(terms, values, strict=True))


def test_a_features_details_and_lineage(built: Built, browser: WebDriver) -> None:
    using = services_ref(built.manifest)
    assert any(using.values()) and set(built.registry.features) - set(using)  # used and not
    open_page(browser, built.page)
    assert not browser.find_element(By.ID, "details").is_displayed()
    for name in sorted(built.registry.features):
        feature = built.registry.feature(name)
        view = built.registry.views[feature.view]
        browser.find_element(By.CSS_SELECTOR, f'tr[data-feature="{name}"]').click()
        shown = details(browser)
        assert shown["Type"] == f"{feature.value_type} ({feature.data_type})"
        assert shown["Description"] == " ".join(feature.description.split())
        assert shown["View"].startswith(view.name)
        assert shown["Owner"] == view.owner
        assert shown["TTL"] == view.ttl
        assert shown["Freshness SLA"] == view.freshness_sla
        assert shown["Current freshness"].startswith(built.labels[view.name])
        assert shown["Default"] == json.dumps(feature.default)
        assert shown["Online"].startswith("yes" if view.online else "no")
        assert shown["Feature services"] == ", ".join(using.get(name, [])) or "none"
        lineage = browser.find_element(By.CSS_SELECTOR, "#details .lineage")
        drawn = [e.text for e in lineage.find_elements(By.CSS_SELECTOR, ".node.source .mono")]
        assert set(drawn) == raw_sources(built.manifest, view.name)
        assert lineage.find_element(By.CSS_SELECTOR, ".node.self .mono").text == view.name
        assert browser.current_url.endswith(f"feature={name}")
    # a link to a feature opens it, and so does a changed fragment, and the keyboard
    open_page(browser, built.page, f"feature={name}")
    assert browser.find_element(By.CSS_SELECTOR, "#details h2").text == name
    first = sorted(built.registry.features)[0]
    browser.execute_script("location.hash = arguments[0]", f"feature={first}")
    heading = (By.CSS_SELECTOR, "#details h2")  # hashchange is dispatched as a task: wait
    wait = WebDriverWait(browser, 5, ignored_exceptions=[StaleElementReferenceException])
    wait.until(lambda b: b.find_element(*heading).text == first)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-feature="{name}"]').send_keys(Keys.ENTER)
    assert browser.find_element(By.CSS_SELECTOR, "#details h2").text == name
    # the service list: each service's features, each a link opening the feature
    cards = browser.find_elements(By.CSS_SELECTOR, "#service-list .service")
    services = built.registry.feature_services
    assert [c.get_attribute("data-service") for c in cards] == list(services)
    for card in cards:
        service = services[str(card.get_attribute("data-service"))]
        assert service.owner in card.text and service.description.strip() in card.text
        for request_feature in service.request_features:
            assert request_feature.expression.text in card.text
        links = card.find_elements(By.TAG_NAME, "a")
        names = [*service.features, *(r.name for r in service.request_features)]
        assert [a.text for a in links] == names
        for i in (len(service.features) - 1, -1):
            links[i].click()
            assert browser.find_element(By.CSS_SELECTOR, "#details h2").text == names[i]
    # a request-time feature: its expression, what it reads, the lineage of those views
    for row in rows_ref(built.registry):
        if row.view is not None:
            continue
        declared = next(
            r for r in built.registry.feature_service(row.services[0]).request_features
            if r.name == row.name
        )  # fmt: skip
        browser.find_element(By.CSS_SELECTOR, f'tr[data-feature="{row.id}"]').click()
        shown = details(browser)
        assert shown["Type"] == f"{row.type} (computed at request time)"
        assert shown["Expression"] == declared.expression.text
        assert shown["Reads"] == ", ".join(
            [
                *declared.expression.features,
                *(f"request.{f}" for f in declared.expression.request_fields),
            ]
        )
        assert shown["Feature services"] == row.services[0]
        read = {built.registry.view_of(f).name for f in declared.expression.features}
        drawn = browser.find_elements(By.CSS_SELECTOR, "#details .lineage .node.self .mono")
        assert sorted(e.text for e in drawn) == sorted(read)
        assert browser.current_url.endswith(f"feature={row.id}")
    assert errors(browser) == []


PAYLOAD = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def test_markup_in_the_manifest_is_shown_as_text(
    built: Built, browser: WebDriver, tmp_path: Path
) -> None:
    manifest = copy.deepcopy(built.manifest)
    name = sorted(built.registry.features)[0]
    view = built.registry.feature(name).view
    node = next(n for n in manifest["nodes"].values() if n.get("name") == view)
    node["columns"][name]["description"] = "risky " + PAYLOAD
    node["description"] = PAYLOAD
    node["config"]["meta"]["featurestore"]["owner"] = "<b>" + PAYLOAD
    source = next(iter(manifest["sources"].values()))
    source["description"] = PAYLOAD
    exposure = next(e for e in manifest["exposures"].values() if e.get("type") == "ml")
    exposure["description"] = PAYLOAD
    request_feature = exposure["meta"]["featurestore"]["request_features"][0]
    request_feature["description"] = PAYLOAD
    registry = registry_from_manifest(manifest)
    page, _ = write_catalog(build_catalog(registry, NOW), tmp_path / "site")
    assert PAYLOAD not in page.read_text()  # escaped in the embedded JSON
    open_page(browser, page, f"feature={name}")
    assert browser.execute_script("return window.pwned === undefined") is True
    shown = details(browser)
    assert shown["Description"] == "risky " + PAYLOAD
    assert shown["Owner"] == "<b>" + PAYLOAD
    assert PAYLOAD in browser.find_element(By.CSS_SELECTOR, "#details .lineage").text
    assert PAYLOAD in browser.find_element(By.ID, "service-list").text
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main b, main script") == []
    open_page(browser, page, f"feature={exposure['name']}.{request_feature['name']}")
    assert details(browser)["Description"] == PAYLOAD
    # an owner is also a select option, as text
    owner = Select(browser.find_element(By.ID, "owner"))
    assert "<b>" + PAYLOAD in [o.text for o in owner.options]
    assert errors(browser) == []


def test_offline_views_and_no_store(built: Built, browser: WebDriver, tmp_path: Path) -> None:
    manifest = copy.deepcopy(built.manifest)
    offline = sorted(built.registry.views)[0]
    node = next(n for n in manifest["nodes"].values() if n.get("name") == offline)
    node["config"]["meta"]["featurestore"]["online"] = False
    registry = registry_from_manifest(manifest)
    page, _ = write_catalog(build_catalog(registry, NOW), tmp_path / "site")
    open_page(browser, page)
    assert "freshness not checked" in browser.find_element(By.ID, "built").text
    badges = {
        str(row.get_attribute("data-feature")): row.find_element(By.CSS_SELECTOR, ".badge").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#features tbody tr")
    }
    rows = rows_ref(registry)
    assert badges == {
        row.id: "at request" if row.view is None else "offline" if row.view == offline
        else "not checked"
        for row in rows
    }  # fmt: skip
    browser.find_element(By.ID, "online-only").click()
    online = [row.id for row in rows if row.view != offline]
    assert visible_features(browser) == online and len(online) < len(rows)
    assert browser.find_element(By.ID, "count").text.startswith(f"{len(online)} of ")
    assert errors(browser) == []


def test_a_screenshot(built: Built, browser: WebDriver, tmp_path: Path) -> None:
    feature = sorted(built.registry.features)[0]
    open_page(browser, built.page, f"feature={feature}")
    shot = tmp_path / "catalog.png"
    assert browser.save_screenshot(str(shot))
    data = shot.read_bytes()
    image = read_png(data)
    size = browser.get_window_size()
    width = browser.execute_script("return window.innerWidth")
    height = browser.execute_script("return window.innerHeight")
    assert (image.width, image.height) == (width, height), size
    assert 20_000 < len(data) < 5_000_000
    assert image.distinct_bytes > 50  # text, badges and boxes: not a blank page


def test_the_json_document(built: Built, demo_warehouse: Warehouse) -> None:
    document = json.loads((built.page.parent / "catalog.json").read_text())
    registry = built.registry
    assert document["catalog_version"] == 1
    assert document["generated_at"] == iso(NOW)
    assert document["freshness_checked"] is True and document["store"].startswith("sqlite:///")
    assert [f["id"] for f in document["features"]] == [r.id for r in rows_ref(registry)]
    stored = [f for f in document["features"] if f["kind"] == "stored"]
    assert sorted(f["name"] for f in stored) == sorted(registry.features)
    for item in stored:
        feature = registry.feature(item["name"])
        view = registry.views[feature.view]
        assert (item["view"], item["entity"], item["owner"], item["type"], item["default"]) == (
            view.name, view.entity.name, view.owner, feature.value_type, feature.default
        )  # fmt: skip
    # each online view's freshness is what `featurestore freshness` says at the same time
    url = "sqlite:///" + document["store"].removeprefix("sqlite:///")
    proc = run_cli(
        "freshness", "--online", url, "--now", iso(NOW), "--json", env=demo_warehouse.env
    )
    assert proc.returncode == 6, proc.stderr  # one view is over its SLA, one never loaded
    expected = {item["view"]: item for item in json.loads(proc.stdout)}
    assert {v["name"]: v["freshness"] for v in document["views"] if v["online"]} == expected
    assert all(v["freshness"] is None for v in document["views"] if not v["online"])
    using = services_ref(built.manifest)
    assert {f["name"]: f["services"] for f in stored} == {
        name: using.get(name, []) for name in registry.features
    }
    exposures = [e for e in built.manifest["exposures"].values() if e.get("type") == "ml"]
    assert sorted(s["name"] for s in document["services"]) == sorted(e["name"] for e in exposures)
    lineage = {v["name"]: {n["name"] for n in v["lineage"] if n["kind"] == "source"}
               for v in document["views"]}  # fmt: skip
    assert lineage == {name: raw_sources(built.manifest, name) for name in registry.views}


def test_command_errors(demo_warehouse: Warehouse, tmp_path: Path) -> None:
    env = demo_warehouse.env
    proc = run_cli("catalog", "--out", str(tmp_path), "--online", "nosuch://x", env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ") and len(proc.stderr.splitlines()) == 1
    proc = run_cli("catalog", "--out", str(tmp_path), "--online", "redis://127.0.0.1:1/0", env=env)
    assert proc.returncode == 4 and "cannot reach Redis" in proc.stderr, proc.stderr
    uninitialized = f"sqlite:///{tmp_path / 'empty.db'}"
    proc = run_cli("catalog", "--out", str(tmp_path), "--online", uninitialized, env=env)
    assert proc.returncode == 5 and "init-store" in proc.stderr, proc.stderr
    proc = run_cli("catalog", "--out", str(tmp_path), "--now", "yesterday", env=env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: invalid --now") and "Traceback" not in proc.stderr
    assert not (tmp_path / "index.html").exists()
    missing = {**env, "DBT_TARGET_PATH": str(tmp_path / "none")}
    proc = run_cli("catalog", "--out", str(tmp_path / "site"), env=missing)
    assert proc.returncode == 1
    assert "dbt parse" in proc.stderr and "Traceback" not in proc.stderr
