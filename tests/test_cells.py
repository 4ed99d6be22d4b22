"""runbooks.cells: what the cells of a hand-driven notebook show, on notebooks built cell by cell."""

from __future__ import annotations

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from runbooks import cells


def code(source: str, count: int | None = None, *, id: str, tags=()):
    cell = new_code_cell(source, execution_count=count, id=id)
    cell.metadata["tags"] = list(tags)
    return cell


def opened():
    """The notebook as `runbook open` wrote it: markdown, parameters, injected parameters, three steps."""
    return new_notebook(
        cells=[
            new_markdown_cell("# Title", id="m0"),
            code('dsn = ""  # Password: PGPASSWORD or ~/.pgpass, never here', id="p1", tags=["parameters"]),
            code('dsn = "host=db"', id="injected", tags=["injected-parameters"]),
            code("db = connect(dsn)", id="s3"),
            code("usage = pool_usage(db)", id="s4"),
            code("db.close()", id="s5"),
        ]
    )


def session(*counts: int | None, errors: dict[int, str] | None = None):
    """The opened notebook with the execution counts of its five code cells (None: never executed)."""
    nb = opened()
    for cell, count in zip(nb.cells[1:], counts, strict=True):
        cell.execution_count = count
    for index, ename in (errors or {}).items():
        nb.cells[index].outputs = [new_output("error", ename=ename, evalue="it broke", traceback=[])]
    return nb


def test_every_code_cell_once_in_order_is_completed():
    audit = cells.audit(session(1, 2, 3, 4, 5), opened())
    assert audit.status == "completed" and audit.reason is None and audit.error is None
    assert [(r.cell, r.execution_count) for r in audit.executed] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert audit.edited == audit.raised == audit.never_executed == audit.out_of_order == ()


def test_cells_never_executed_make_it_partial():
    audit = cells.audit(session(1, 2, 3, None, None), opened())
    assert audit.status == "partial"
    assert audit.never_executed == (4, 5)
    assert audit.reason == "2 of 5 code cells never executed (cells 4, 5)"


def test_a_cell_run_again_later_is_out_of_order_and_leaves_a_count_no_cell_shows():
    audit = cells.audit(session(1, 6, 3, 4, 5), opened())  # cell 2 ran second, then again after all the others
    assert audit.status == "partial"
    assert audit.out_of_order == (2,)
    assert audit.missing_counts == (2,)
    assert "cell 2 executed out of order" in audit.reason
    assert "execution counts 2 appear in no cell" in audit.reason
    assert [r.cell for r in audit.executed] == [1, 3, 4, 5, 2]  # by execution count


def test_a_cell_run_before_the_ones_above_it_is_the_one_out_of_order():
    audit = cells.audit(session(1, 2, 5, 3, 4), opened())  # cell 4 and 5 ran before cell 3
    assert audit.out_of_order == (3,)
    assert audit.missing_counts == ()


def test_a_cell_run_after_a_kernel_restart_is_out_of_order():
    audit = cells.audit(session(1, 2, 3, 1, None), opened())
    assert audit.out_of_order == (4,) and audit.never_executed == (5,)


def test_a_cell_that_raised_makes_it_failed_with_the_first_error():
    audit = cells.audit(session(1, 2, 3, 4, None, errors={3: "DatabaseUnreachable", 4: "NameError"}), opened())
    assert audit.status == "failed"
    assert (audit.error.cell, audit.error.ename) == (3, "DatabaseUnreachable")
    assert [r.cell for r in audit.raised] == [3, 4]
    assert audit.reason.startswith("cell 3 raised DatabaseUnreachable: it broke; cell 4 raised NameError")


def test_empty_code_cells_need_not_run():
    nb = session(1, 2, 3, 4, 5)
    nb.cells.append(code("  \n", id="blank"))
    assert cells.audit(nb, opened()).status == "completed"


def test_edits_are_matched_by_cell_id_and_diffed():
    nb = session(1, 2, 3, 4, 5)
    nb.cells[4].source = "usage = pool_usage(db, limit=5)"
    nb.cells[2].id = "a-new-id"  # the injected cell is matched by its tag
    del nb.cells[5]  # db.close() removed
    nb.cells.insert(3, code("print(dsn)", 3, id="added"))
    edited = {(e.cell, e.runbook_cell): e.diff for e in cells.audit(nb, opened()).edited}
    assert set(edited) == {(5, 4), (3, None), (None, 5)}
    assert edited[5, 4].splitlines() == [
        "--- runbook cell 4",
        "+++ session cell 5",
        "@@ -1 +1 @@",
        "-usage = pool_usage(db)",
        "+usage = pool_usage(db, limit=5)",
    ]
    assert edited[3, None].endswith("+print(dsn)")
    assert edited[None, 5].endswith("-db.close()")


@pytest.mark.parametrize(
    "source,value",
    [
        ('password = "hunter2-and-more"', "hunter2-and-more"),
        ('connect(host="db", password="hunter2-and-more")', "hunter2-and-more"),
        ('os.environ["PGPASSWORD"] = "hunter2-and-more"', "hunter2-and-more"),
        ('headers = {"Authorization": "Bearer abcdefgh12345678"}', "abcdefgh12345678"),
        ('dsn = "postgresql://admin:hunter2-and-more@db/app"', "hunter2-and-more"),
        ('dsn = "host=db password=hunter2-and-more"', "hunter2-and-more"),
        ("%env PGPASSWORD=hunter2-and-more", "hunter2-and-more"),
    ],
)
def test_a_credential_in_new_source_is_found_with_its_value(source, value):
    nb = session(1, 2, 3, 4, 5)
    nb.cells.append(code(source, id="new"))
    found = cells.credentials(nb, opened())
    assert found.cells == (6,)
    assert found.values == (value,)


@pytest.mark.parametrize(
    "source",
    [
        "token = kube.service_account_token()",  # a name, not a literal
        'secret = get_secret("jwt-signing-key")',
        'label = "password reset emails"',
        "x = 1",
    ],
)
def test_code_that_only_names_credentials_is_not_one(source):
    nb = session(1, 2, 3, 4, 5)
    nb.cells.append(code(source, id="new"))
    assert cells.credentials(nb, opened()) == cells.Credentials((), ())


def test_the_runbooks_own_lines_and_short_values_are_not_scrubbed_everywhere():
    nb = session(1, 2, 3, 4, 5)
    assert cells.credentials(nb, opened()).cells == ()  # "Password: PGPASSWORD" is the runbook's own comment
    nb.cells.append(new_markdown_cell("tried postgresql://admin:pw@db/app, refused", id="note"))
    found = cells.credentials(nb, opened())
    assert found.cells == (6,) and found.values == ()  # reported; "pw" is too short to replace everywhere
