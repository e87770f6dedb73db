"""Donor reports: small-cell suppression, ``sarhad report`` and ``GET .../report.{csv,xlsx}``.

Suppression is checked independently of how it is done: the published table's sum relations are written
out as a linear system, and exact rational elimination shows that no hidden count is determined by the
shown ones. The command and the endpoint run against a real store filled through the real ingest path.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests
from sqlalchemy import select

from server.datasets.suppression import suppress_column, suppress_grid, whole_group_lines
from server.models import AuditEvent
from tests.conftest import AppEnv, RunCli
from tests.datasets_fixtures import make_app_user, make_project, publish_form, submit, web_user

K = 5

# ------------------------------------------------------------------ an independent check of the result


def _rank(matrix: list[list[Fraction]]) -> int:
    rows = [row[:] for row in matrix if any(row)]
    rank, width = 0, len(rows[0]) if rows else 0
    for col in range(width):
        pivot = next((i for i in range(rank, len(rows)) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        for i in range(len(rows)):
            if i != rank and rows[i][col] != 0:
                factor = rows[i][col] / rows[rank][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[rank], strict=True)]
        rank += 1
    return rank


def _determined(equations: list[dict[Any, int]], hidden: Sequence[Any]) -> list[Any]:
    """The hidden unknowns whose value the equations fix: a column of the hidden unknowns' matrix that
    is not in the span of the others."""
    matrix = [[Fraction(eq.get(v, 0)) for v in hidden] for eq in equations]
    full = _rank(matrix)
    return [v for i, v in enumerate(hidden) if _rank([row[:i] + row[i + 1 :] for row in matrix]) == full - 1]


def _grid_equations(rows: int, cols: int) -> list[dict[Any, int]]:
    """Each line of the grid (totals last) adds up to its total."""
    equations: list[dict[Any, int]] = []
    for r in range(rows):
        eq = {(r, c): 1 for c in range(cols - 1)}
        eq[r, cols - 1] = -1
        equations.append(eq)
    for c in range(cols):
        eq = {(r, c): 1 for r in range(rows - 1)}
        eq[rows - 1, c] = -1
        equations.append(eq)
    return equations


def _with_totals(inner: list[list[int]]) -> list[list[int]]:
    grid = [[*row, sum(row)] for row in inner]
    return [*grid, [sum(col) for col in zip(*grid, strict=True)]]


def _assert_safe(grid: list[list[int]], hidden: set[tuple[int, int]]) -> None:
    rows, cols = len(grid), len(grid[0])
    small = {(r, c) for r in range(rows) for c in range(cols) if 0 < grid[r][c] < K}
    assert small <= hidden, f"a count below {K} is shown: {sorted(small - hidden)}"
    determined = _determined(_grid_equations(rows, cols), sorted(hidden))
    assert not determined, f"hidden counts can be worked out: {determined} in {grid}"


def test_one_small_cell_in_a_row_gets_a_complement_in_its_row_and_column() -> None:
    grid = _with_totals([[10, 3, 12], [8, 9, 7], [20, 15, 11]])
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)
    assert (0, 1) in hidden and len(hidden) >= 4  # a 2x2 rectangle at least


def test_mission_shaped_table() -> None:
    # Region x sex: Khatlon has 3 women, GBAO 2 men and no women (its total is small too).
    grid = _with_totals([[7, 6], [3, 9], [0, 2]])
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)
    assert hidden == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)}


def test_small_row_total_and_cascading_complements() -> None:
    grid = _with_totals([[1, 1, 0, 0], [6, 7, 8, 9], [1, 0, 12, 30], [0, 0, 0, 4], [50, 40, 30, 20]])
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)


def test_everything_small() -> None:
    grid = _with_totals([[1, 2], [3, 1]])
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)
    assert (2, 2) not in hidden  # the grand total of 7 is shown; nothing else can be worked out


def test_two_protected_blocks_joined_by_one_cell_are_not_left_with_a_bridge() -> None:
    # Two 2x2 blocks of small counts, and one small count joining them: every line hides two or more,
    # yet the joining count is on no cycle and would follow from the totals.
    inner = [
        [2, 3, 40, 50, 60],
        [4, 2, 1, 70, 80],
        [90, 60, 2, 3, 70],
        [80, 90, 4, 1, 60],
        [70, 80, 90, 60, 50],
    ]
    grid = _with_totals(inner)
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)


def test_zero_cells_stay_shown_and_are_not_used_as_complements_when_avoidable() -> None:
    grid = _with_totals([[0, 3, 9], [0, 8, 7], [0, 20, 30]])
    hidden = suppress_grid(grid, K)
    _assert_safe(grid, hidden)
    assert all(grid[r][c] > 0 for r, c in hidden)


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_never_give_a_hidden_count_away(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(5):
        rows, cols = rng.randint(1, 6), rng.randint(1, 5)
        inner = [[rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 9, 14, 30]) for _ in range(cols)] for _ in range(rows)]
        grid = _with_totals(inner)
        _assert_safe(grid, suppress_grid(grid, K))


@pytest.mark.parametrize(
    "counts", [[13, 12, 2], [3, 40, 50], [3, 4, 50], [1, 1], [0, 0, 3], [30, 40], [0, 9, 2, 0, 7], [2]]
)
def test_one_column_with_its_total(counts: list[int]) -> None:
    total = sum(counts)
    hidden, hide_total = suppress_column(counts, total, K)
    assert {i for i, n in enumerate(counts) if 0 < n < K} <= hidden
    assert hide_total or not 0 < total < K
    unknowns = [*sorted(hidden), *(["total"] if hide_total else [])]
    equation = {**{i: 1 for i in range(len(counts))}, "total": -1}
    assert not _determined([equation], unknowns), f"{counts}: {unknowns} can be worked out"


# ----------------------------------------------------------------------- the command and the endpoint

FORM = """
| settings |
| | form_id | version | namespaces |
| | donor | 1 | sarhad="https://sarhad.tj/xforms" |
| survey |
| | type | name | label::English (en) | label::Russian (ru) | bind::sarhad:sensitivity |
| | select_one region | region | Region | Регион | |
| | select_one sex | sex | Sex | Пол | |
| | integer | age | Age | Возраст | |
| | select_one yn | harmed | Harmed | Пострадал | sensitive |
| | select_one yn | consent | Consent | Согласие | personal |
| | select_multiple kind | kinds | Kinds | Виды | |
| | text | name | Name | Имя | personal |
| | text | remark | Remark | Замечание | |
| | date | visit | Visit | Визит | |
| | begin_repeat | member | Member | Член | |
| | select_one sex | member_sex | Member sex | Пол члена | |
| | end_repeat | | | | |
| choices |
| | list_name | name | label::English (en) | label::Russian (ru) |
| | region | sughd | Sughd | Согд |
| | region | khatlon | Khatlon | Хатлон |
| | region | gbao | GBAO | ГБАО |
| | sex | female | Female | Женский |
| | sex | male | Male | Мужской |
| | yn | yes | Yes | Да |
| | yn | no | No | Нет |
| | kind | a | A | А |
| | kind | b | B | Б |
"""

# (region, sex) → how many submissions: the mission-shaped table above.
PEOPLE = {("sughd", "female"): 7, ("sughd", "male"): 6, ("khatlon", "female"): 3, ("khatlon", "male"): 9,
          ("gbao", "male"): 2}  # fmt: skip
TABLE = [
    "Region,Female,Male,Total",
    "Sughd,[c],[c],13",
    "Khatlon,[c],[c],[c]",
    "GBAO,0,[c],[c]",
    "Total,10,17,27",
]


def _xml(n: int, region: str, sex: str, age: int) -> str:
    return (
        f'<data id="donor" version="1"><region>{region}</region><sex>{sex}</sex><age>{age}</age>'
        f"<harmed>no</harmed><consent>yes</consent><kinds>a b</kinds><name>Person {n}</name>"
        f"<remark> </remark><visit>2026-0{1 + n % 3}-15</visit>"
        f"<member><member_sex>{sex}</member_sex></member>"
        f"<meta><instanceID>uuid:donor-{n}</instanceID></meta></data>"
    )


@pytest.fixture(scope="module")
def store(live_server: Any, module_env: AppEnv) -> Iterator[dict[str, Any]]:
    db, app = live_server.database, live_server.app
    project_id = make_project(db, "Donors")
    publish_form(db, app, project_id, FORM.encode(), "donor.md")
    n = 0
    for (region, sex), count in PEOPLE.items():
        for _ in range(count):
            n += 1
            submit(db, app, project_id, _xml(n, region, sex, 10 + 3 * n))
    # A trainee's practice submission is not counted (GBAO women stay 0).
    trainee = make_app_user(db, project_id, "Trainee", test=True)
    submit(db, app, project_id, _xml(99, "gbao", "female", 30), app_user_id=trainee)
    other = make_project(db, "Elsewhere")
    yield {
        "live": live_server,
        "env": module_env,
        "project": project_id,
        "analyst": web_user(live_server, "donor-analyst@example.tj", "analyst", project_id),
        "outsider": web_user(live_server, "donor-outsider@example.tj", "analyst", other),
    }


def _table(text: str) -> list[str]:
    return text.split("\n\n")[0].splitlines()


def _notes(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# ")]


def test_cli_report_is_the_suppressed_table_with_its_notes(store: dict[str, Any], run_cli: RunCli,
                                                           tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "donor.csv"
    result = run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "region",
                     "--cols", "sex", "-o", str(out))  # fmt: skip
    assert f"report of donor written to {out} (27 submissions, 3 rows, 7 counts hidden, k=5)" in result.stdout
    text = out.read_text(encoding="utf-8")
    assert _table(text) == TABLE
    notes = "\n".join(_notes(text))
    assert "[c] = confidential" in notes and "Counts hidden: 7 (3 below 5; 4 to protect them)" in notes
    assert "Rows: Region. Columns: Sex." in notes and "test submissions" in notes


def test_cli_report_one_dimension_in_russian_and_bands(store: dict[str, Any], run_cli: RunCli,
                                                       tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "regions.csv"
    run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "region", "--lang", "ru",
            "-o", str(out))  # fmt: skip
    assert _table(out.read_text(encoding="utf-8")) == [
        "Регион,Count",
        "Согд,13",
        "Хатлон,[c]",
        "ГБАО,[c]",
        "Total,27",
    ]
    ages = tmp_path / "ages.csv"
    lowered = run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "age:0-29,30-59,60-",
                      "--cols", "harmed", "--min-cell", "3", "-o", str(ages), check=False)  # fmt: skip
    assert lowered.returncode == 1 and "cannot be lowered below 5" in lowered.stderr and not ages.exists()
    run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "age:0-29,30-59,60-,region",
            "--min-cell", "6", "-o", str(ages))  # fmt: skip
    lines = _table(ages.read_text(encoding="utf-8"))
    assert lines[0] == "Age,Region,Count" and lines[-1] == "Total,,27"
    assert {line.split(",")[0] for line in lines[1:-1]} <= {"0-29", "30-59", "60+"}


def test_cli_report_xlsx(store: dict[str, Any], run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "donor.xlsx"
    run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "region", "--cols", "sex",
            "-o", str(out))  # fmt: skip
    book = openpyxl.load_workbook(out)
    values = [[cell for cell in row] for row in book["Report"].iter_rows(values_only=True)]
    assert values == [[int(v) if v.isdigit() else v for v in line.split(",")] for line in TABLE]
    assert any("confidential" in (row[0] or "") for row in book["Notes"].iter_rows(values_only=True))


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("name", "tagged personal data"),
        ("consent", "tagged personal data"),
        ("remark", "cannot be a report dimension"),
        ("kinds", "cannot be a report dimension"),
        ("member_sex", "inside a repeat"),
        ("age", "give bands"),
        ("age:30-20", "must go up"),
        ("nothing", "has no question 'nothing'"),
        ("period:week", "not a period"),
    ],
)
def test_cli_refuses_dimensions_that_could_identify(store: dict[str, Any], run_cli: RunCli, tmp_path: Path,
                                                    rows: str, message: str) -> None:  # fmt: skip
    out = tmp_path / "refused.csv"
    result = run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", rows, "-o", str(out),
                     check=False)  # fmt: skip
    assert result.returncode == 1 and message in result.stderr and not out.exists()


def test_http_report_for_any_role_of_the_project(store: dict[str, Any]) -> None:
    url = f"{store['live'].url}/v1/projects/{store['project']}/forms/donor/report.csv"
    reply = requests.get(url, params={"rows": "region", "cols": "sex"}, headers=store["analyst"].headers,
                         timeout=30)  # fmt: skip
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/csv")
    assert 'filename="donor-report.csv"' in reply.headers["Content-Disposition"]
    assert _table(reply.text) == TABLE
    by_path = requests.get(url, params={"rows": "/region", "cols": "/sex"}, headers=store["analyst"].headers,
                           timeout=30)  # fmt: skip
    assert _table(by_path.text) == TABLE
    xlsx = requests.get(url.replace(".csv", ".xlsx"), params={"rows": "period:year,visit:quarter"},
                        headers=store["analyst"].headers, timeout=30)  # fmt: skip
    assert xlsx.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content))["Report"]
    header = next(sheet.iter_rows(values_only=True))
    assert header == ("Received (year)", "Visit (quarter)", "Count")


def test_http_report_errors(store: dict[str, Any]) -> None:
    base = f"{store['live'].url}/v1/projects/{store['project']}/forms"
    analyst = store["analyst"].headers
    assert requests.get(f"{base}/donor/report.csv", params={"rows": "region"}, timeout=30).status_code == 401
    outsider = requests.get(f"{base}/donor/report.csv", params={"rows": "region"},
                            headers=store["outsider"].headers, timeout=30)  # fmt: skip
    assert outsider.status_code == 403
    for params, status, text in [
        ({"rows": "name"}, 400, "personal"),
        ({}, 400, "not valid"),
        ({"rows": "region", "minCell": "2"}, 400, "cannot be lowered"),
        ({"rows": "region", "minCell": "many"}, 400, "not valid"),
        ({"rows": "region", "lang": "fr"}, 400, "not valid"),
    ]:
        reply = requests.get(f"{base}/donor/report.csv", params=params, headers=analyst, timeout=30)
        assert reply.status_code == status and text in reply.json()["message"], (params, reply.text)
    missing = requests.get(
        f"{base}/nothing/report.csv", params={"rows": "region"}, headers=analyst, timeout=30
    )
    assert missing.status_code == 404


def test_reports_are_in_the_audit_log(store: dict[str, Any]) -> None:
    url = f"{store['live'].url}/v1/projects/{store['project']}/forms/donor/report.csv"
    params = {"rows": "region", "cols": "sex", "since": "2020-01-01", "minCell": "7"}
    assert requests.get(url, params=params, headers=store["analyst"].headers, timeout=30).status_code == 200
    with store["live"].database.read() as session:
        last = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "form.submission.report").order_by(AuditEvent.id)
        ).all()[-1]
        assert last.target_id == "donor" and last.actor_user_id is not None
        assert last.details["rows"] == ["region"] and last.details["cols"] == "sex"
        assert last.details["min_cell"] == 7 and last.details["via"] == "api"
        assert last.details["filters"]["since"].startswith("2020-01-01")


# ------------------------------------------------------------------------------ group disclosure


def test_a_group_whose_whole_count_is_one_sensitive_answer_is_hidden_with_its_zeros() -> None:
    # Rows are districts, columns the answers of a sensitive question: every one of the 6 in the first
    # district said "yes". No count is small, so only the group rule hides anything.
    grid = _with_totals([[6, 0, 0], [7, 9, 8], [12, 6, 10]])
    assert suppress_grid(grid, K) == set()
    groups = whole_group_lines(grid, [0, 1, 2], rows=True)
    assert groups == {(0, 0), (0, 1), (0, 2)}
    hidden = suppress_grid(grid, K, groups)
    _assert_safe(grid, hidden)
    assert groups <= hidden and (0, 3) not in hidden  # the group's size stays shown


def test_group_rule_leaves_the_missing_column_out_and_spares_mixed_groups() -> None:
    # Columns: yes, no, (missing). Row 0: 6 yes and 2 who did not answer: still everyone who answered.
    grid = _with_totals([[6, 0, 2], [5, 7, 0]])
    assert whole_group_lines(grid, [0, 1], rows=True) == {(0, 0), (0, 1)}
    by_columns = _with_totals([[6, 5], [0, 7]])  # the groups are columns: the first is all "yes"
    assert whole_group_lines(by_columns, [0, 1], rows=False) == {(0, 0), (1, 0)}


def test_report_on_a_sensitive_question_hides_groups_with_one_answer(store: dict[str, Any]) -> None:
    # Everyone answered "no" to the sensitive question "harmed": without the rule the table would read
    # Sughd,0,13,13 and tell every person in Sughd's answer.
    url = f"{store['live'].url}/v1/projects/{store['project']}/forms/donor/report.csv"
    reply = requests.get(url, params={"rows": "region", "cols": "harmed"}, headers=store["analyst"].headers,
                         timeout=30)  # fmt: skip
    assert reply.status_code == 200
    rows = list(csv.reader(_table(reply.text)))
    assert rows[0] == ["Region", "Yes", "No", "Total"]
    for row in rows[1:]:
        assert row[1] == row[2] == "[c]", row
    assert rows[1][3] == "13" and rows[-1][3] == "27"  # group sizes stay shown
    notes = "\n".join(_notes(reply.text))
    assert "Group disclosure" in notes and "where one answer holds a whole group" in notes
    alone = requests.get(url, params={"rows": "harmed"}, headers=store["analyst"].headers, timeout=30)
    assert _table(alone.text) == ["Harmed,Count", "Yes,[c]", "No,[c]", "Total,27"]
    # As the last of several rows, every answer is listed in each region (a lone "No" row would tell).
    nested = requests.get(url, params={"rows": "region,harmed"}, headers=store["analyst"].headers,
                          timeout=30)  # fmt: skip
    nested_rows = list(csv.reader(_table(nested.text)))
    assert nested_rows[0] == ["Region", "Harmed", "Count"]
    inner = nested_rows[1:-1]
    assert [r[1] for r in inner] == ["Yes", "No"] * (len(inner) // 2) and len(inner) >= 4
    assert all(r[2] == "[c]" for r in inner), inner
    refused = requests.get(url, params={"rows": "harmed,region"}, headers=store["analyst"].headers,
                           timeout=30)  # fmt: skip
    assert refused.status_code == 400 and "sensitive" in refused.json()["message"]


def test_cli_report_applies_the_group_rule_and_says_so(store: dict[str, Any], run_cli: RunCli,
                                                       tmp_path: Path) -> None:  # fmt: skip
    out = tmp_path / "harmed.csv"
    run_cli(store["env"], "report", "donor", "--project", "Donors", "--rows", "sex", "--cols", "harmed",
            "-o", str(out))  # fmt: skip
    text = out.read_text(encoding="utf-8")
    assert _table(text) == ["Sex,Yes,No,Total", "Female,[c],[c],10", "Male,[c],[c],17", "Total,[c],[c],27"]
    assert "Group disclosure" in "\n".join(_notes(text))
