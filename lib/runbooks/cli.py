"""`runbook`: list, show, run and open the incident runbooks; seal, verify, report on, communicate and close an
incident.

Exit codes: 0 every cell ran; 1 a cell failed, the target was unreachable or the run passed its time
limit (evidence still written), or a message posted by `comms --post` was not delivered (recorded); 2 bad
input (unknown runbook, parameter, environment, wrong type, incident without evidence), before any kernel;
3 `verify` found evidence changed, removed or inserted; 4 `close` found no confirmed recovery (and no
--force), or `serve`'s queue cannot be used; 130 `run` stopped by Ctrl-C or SIGTERM (evidence still written).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click

from . import __version__, catalog, chain, escape, limits, registry, storage, summary, units
from .errors import UsageError
from .incident import MESSAGE_KINDS, evidence_folder, incident_ids, load
from .limits import Limits
from .notify.pagerduty import KINDS as PAGERDUTY_KINDS
from .runfiles import incident_folder

NOT_INTACT = 3  # `runbook verify`: some evidence was changed, removed or inserted
INTERRUPTED_EXIT = 130  # `runbook run` stopped by Ctrl-C or SIGTERM (its evidence written), as shells count SIGINT


def _timeouts(command):
    """`--timeout` and `--cell-timeout`, for `run` and `serve`."""
    seconds = click.FloatRange(min=0, min_open=True)
    command = click.option(
        "--cell-timeout",
        type=seconds,
        default=limits.CELL_SECONDS,
        show_default=True,
        help="Seconds any one cell may run.",
    )(command)
    return click.option(
        "--timeout",
        type=seconds,
        default=limits.RUN_SECONDS,
        show_default=True,
        help="Seconds a whole run may take; then it is ended and leaves failed evidence.",
    )(command)


class _OutputDir(click.ParamType):
    """`--output-dir`: a local folder, or s3://BUCKET/PREFIX, an object store worked through its local spool
    (runbooks.storage): the command then works on the spool and uploads what it wrote when it ends."""

    name = "PATH|s3://BUCKET/PREFIX"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or not storage.is_store(value):
            return Path(value)
        spool = storage.mount(value)
        if ctx is not None:
            ctx.call_on_close(_upload)
        return spool


def _upload() -> None:
    if left := storage.push_all():
        click.echo(
            f"runbook: {len(left)} file(s) not uploaded to the object store yet: kept in the spool, uploaded by the "
            "next command that writes there",
            err=True,
        )


_output_dir = click.option(
    "--output-dir",
    type=_OutputDir(),
    default=catalog.OUTPUT,
    show_default=True,
    help="Where incidents are kept: a folder, or s3://BUCKET/PREFIX (endpoint and credentials from AWS_*).",
)


def _pulled(output_dir: Path, incident: str) -> None:
    """The incident as its object store holds it, when the output folder is one (nothing for a local folder)."""
    storage.pull(incident_folder(output_dir, incident))


class _Group(click.Group):
    """Turn our usage errors into one line and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            units.zone()  # a RUNBOOK_TIMEZONE naming no zone is refused before anything runs
            return super().invoke(ctx)
        except UsageError as e:
            click.echo(f"runbook: {escape.line(e)}", err=True)
            ctx.exit(e.exit_code)


def _runbook_names(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of a runbook's name."""
    return [name for name in registry.names() if name.startswith(incomplete)]


def _incident_names(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of an incident id, from the output folder given (or the default)."""
    return [
        name for name in incident_ids(ctx.params.get("output_dir") or catalog.OUTPUT) if name.startswith(incomplete)
    ]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="runbook", message="%(prog)s %(version)s")
def main() -> None:
    """Executable incident runbooks: parameterised notebooks that leave timestamped evidence.

    Shell completion (bash; zsh and fish likewise): eval "$(_RUNBOOK_COMPLETE=bash_source runbook)"
    """


@main.command("list", short_help="Every runbook: name, whether it can change anything, title.")
def list_() -> None:
    """Every runbook: its name, whether it can change anything (only with apply=True), its title."""
    width, _ = summary.terminal()
    books = catalog.runbooks()
    name_width = max(len(b.name) for b in books)
    title_width = max((width or 80) - name_width - 11, 20)
    click.echo(f"{'RUNBOOK':<{name_width}}  CHANGES  TITLE")
    for book in books:
        changes = "yes" if registry.get(book.name).changes else "no"
        title = textwrap.wrap(book.title, title_width) or [""]
        click.echo(f"{book.name:<{name_width}}  {changes:<7}  {title[0]}")
        for more in title[1:]:
            click.echo(f"{'':<{name_width + 11}}{more}")
    click.echo("\n`runbook show NAME`: its parameters and what it changes.")


@main.command(short_help="A runbook's parameters, what it changes, its alerts.")
@click.argument("name", shell_complete=_runbook_names)
def show(name: str) -> None:
    """Runbook NAME: what it changes, the alerts routed to it, and each parameter: what it takes, its default and
    its meaning."""
    from .alerts.routing import routes_to

    book, entry = catalog.find(name), registry.get(name)
    click.echo(f"{book.name}: {book.title}")
    click.echo(f"  changes: {entry.changes + ' (only with apply=True)' if entry.changes else 'nothing'}")
    click.echo(f"  diagnosis: {entry.diagnosis}; reads through: {', '.join(entry.access)}")
    click.echo(f"  alerts routed to it: {', '.join(routes_to(name)) or 'none'}\n")
    width, _ = summary.terminal()
    for p in book.parameters.values():
        default = "empty" if p.default in ("", None, [], {}) else repr(p.default)
        click.echo(f"  {p.name}: {p.words}; default {default}")
        click.echo(textwrap.fill(p.help, (width or 100) - 6, initial_indent=" " * 6, subsequent_indent=" " * 6))


def _parameter_options(command):
    """-p, -f and --env: the layers of parameters `run` and `open` merge alike (`_parameters`)."""
    command = click.option("--env", help="Environment: parameters/<ENV>.yaml.")(command)
    command = click.option(
        "-f",
        "--file",
        "files",
        multiple=True,
        type=click.Path(path_type=Path),
        help="YAML file of parameters (repeatable).",
    )(command)
    return click.option(
        "-p",
        "--parameter",
        "pairs",
        nargs=2,
        multiple=True,
        metavar="KEY VALUE",
        help="Set a parameter; VALUE is text for a text parameter, else read as YAML (true, 2.5, null, [a, b]).",
    )(command)


def _parameters(book: catalog.Runbook, env: str | None, files, pairs) -> dict:
    """The notebook's defaults < parameters/<ENV>.yaml < each -f file < the -p pairs, checked (UsageError)."""
    layers = [catalog.environment_layer(env, book)] if env else []
    layers += [catalog.read_yaml(f) for f in files]
    layers += [book.from_cli(pairs)]
    return book.resolve(*layers)


@main.command(short_help="Run a runbook; prints what it found, then its evidence file.")
@click.argument("name", shell_complete=_runbook_names)
@_parameter_options
@click.option("--incident", default="adhoc", show_default=True, help="Incident id: the output sub-folder.")
@_output_dir
@_timeouts
def run(name: str, pairs, files, env, incident: str, output_dir: Path, timeout: float, cell_timeout: float) -> None:
    """Run runbook NAME headlessly. It prints what the run looked at, each finding with its severity, each action
    (applied or previewed) with its target, the status and the HTML; the last line is its evidence file.

    Ctrl-C (or SIGTERM) ends the run and still leaves its evidence (exit 130)."""
    book = catalog.find(name)
    parameters = _parameters(book, env, files, pairs)

    from .kernels import Early

    early = Early(registry.warm_up_modules(name))  # the kernel boots while papermill and nbconvert load
    try:
        with _interrupted_once():
            from . import evidence
            from .runner import INTERRUPTED
            from .runner import run as execute

            result = execute(
                book,
                parameters,
                incident,
                output_dir,
                progress=sys.stdout.isatty(),
                kernel=early.take(),
                limits=Limits(timeout, cell_timeout),
            )
    finally:
        early.close()
    summary.echo(summary.run_lines(evidence.read(result.evidence_path), result.evidence_path))
    if result.error:
        click.echo(f"runbook: {name} failed {escape.line(result.error.line())}", err=True)
    if result.head:  # keep it elsewhere: `runbook verify --head` checks it is still in the chain
        click.echo(f"{incident}: {result.head.line()}")
    click.echo(result.evidence_path)
    if result.error and result.error.ename == INTERRUPTED:
        sys.exit(INTERRUPTED_EXIT)
    sys.exit(0 if result.status == "completed" else 1)


@main.command(short_help="The incidents with evidence: severity, state, runs, last activity.")
@_output_dir
def incidents(output_dir: Path) -> None:
    """Every incident with evidence in the output folder, last active first: its severity, state (open, recovered,
    closed), runs and last activity."""
    storage.pull_all(output_dir)
    rows = [incident_row(load(output_dir, name)) for name in incident_ids(output_dir)]
    if not rows:
        click.echo(f"No incident has evidence in {output_dir}.")
        return
    rows.sort(key=lambda row: row[-1], reverse=True)
    widths = [max(len(str(r[i])) for r in [_INCIDENT_HEADER, *rows]) for i in range(4)]
    for row in [_INCIDENT_HEADER, *rows]:
        cells = [f"{row[i]!s:<{widths[i]}}" for i in range(4)]
        click.echo("  ".join([*cells, row[4] if row is _INCIDENT_HEADER else units.when(row[4])]))


_INCIDENT_HEADER = ("INCIDENT", "SEVERITY", "STATE", "RUNS", "LAST ACTIVITY")


def incident_row(incident) -> tuple:
    last = max(run.record.finished_at for run in incident.runs)
    return (incident.id, incident.severity or "-", incident.state, len(incident.runs), last)


@main.command("show-incident", short_help="An incident's runs: findings and actions, newest first.")
@click.argument("incident", shell_complete=_incident_names)
@_output_dir
def show_incident(incident: str, output_dir: Path) -> None:
    """INCIDENT as its evidence tells it: severity, state, start and duration, then every run (and command) newest
    first with its findings by severity and its actions."""
    _pulled(output_dir, incident)
    loaded = load(output_dir, incident)
    rule = f" ({loaded.severity_rule})" if loaded.severity_rule else ""
    lines = [
        summary.Line(f"{loaded.id}: {loaded.severity or 'severity not rated (no triage)'}{rule}, {loaded.state}"),
        summary.Line(
            f"Started {units.when(loaded.start)} ({loaded.start_basis}); "
            f"{units.duration(loaded.duration)} to {units.when(loaded.end)} ({loaded.end_basis})"
        ),
    ]
    for run in reversed(loaded.runs):
        lines += [summary.Line(""), *summary.run_lines(run.record, loaded.folder / run.evidence)]
    summary.echo(lines)


@contextlib.contextmanager
def _interrupted_once() -> Iterator[None]:
    """SIGTERM stops a run as Ctrl-C does (KeyboardInterrupt, which the runner turns into failed evidence); a
    second signal while that evidence is written is only acknowledged. The handlers before are restored after."""

    def still_writing(signum, frame) -> None:
        click.echo("runbook: stopping: writing the evidence of the run first", err=True)

    def first(signum, frame) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, still_writing)
        raise KeyboardInterrupt

    before = {number: signal.signal(number, first) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


@main.command("open", short_help="Step through a runbook in JupyterLab; every save is sealed.")
@click.argument("name", shell_complete=_runbook_names)
@_parameter_options
@click.option("--incident", required=True, help="Incident id: the output sub-folder.")
@_output_dir
@click.option("--operator", help="Who steps through it, for the evidence.  [default: the OS user]")
@click.option("--no-lab", is_flag=True, help="Only write the working copy.")
@click.option(
    "--port",
    default=8888,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The lab's port (0: any free one; if taken, another free one).",
)
@click.option("--browser", is_flag=True, help="Open the working copy in the default browser.")
@click.option(
    "--seal-after",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seal a saved working copy once its saves pause this many seconds.",
)
def open_(name: str, pairs, files, env, incident: str, output_dir: Path, operator, no_lab, port, browser, seal_after):
    """Open runbook NAME for INCIDENT as a working copy, in JupyterLab until Ctrl-C; every save is sealed.

    Prints the working copy's path, then the lab's address (with its token). A lab that `runbook open` started
    on the same --output-dir is reused: the copy opens there, and this command returns.
    """
    book = catalog.find(name)
    parameters = _parameters(book, env, files, pairs)

    from . import sessions  # papermill and nbformat load only when something is opened

    _pulled(output_dir, incident)
    copy = sessions.open_copy(book, parameters, incident, output_dir, sessions.operator(operator))
    click.echo(copy.path)
    if no_lab:
        if copy.secrets:
            click.echo("runbook: the password in dsn is not kept: give it to the kernel as PGPASSWORD", err=True)
        return

    from . import lab  # jupyter_server loads only for a lab

    lab.open_in_lab(copy, output_dir, port, browser, seal_after, show=click.echo)


@main.command(short_help="Seal an incident's working copies into evidence.")
@click.argument("incident", shell_complete=_incident_names)
@click.argument("notebooks", nargs=-1, type=click.Path(path_type=Path))
@_output_dir
def seal(incident: str, notebooks: tuple[Path, ...], output_dir: Path) -> None:
    """Seal INCIDENT's working copies into evidence: each NOTEBOOK, else each one changed since its last seal.

    Each becomes a notebook as saved, its HTML and an evidence file in the incident's chain, like any run; the
    last line printed is the last evidence file.
    """
    from . import sessions

    _pulled(output_dir, incident)
    copies = sessions.to_seal(output_dir, incident, notebooks)
    if not copies:
        click.echo(f"runbook: {incident}: every working copy is sealed as last saved", err=True)
    for copy in copies:
        sealed = sessions.seal(copy)
        reason = f" ({escape.line(sealed.reason)})" if sealed.reason else ""
        click.echo(f"runbook: {copy.name}: {sealed.status}{reason}", err=True)
        click.echo(sealed.evidence_path)


@main.command(short_help="Check every hash and link of an incident's evidence.")
@click.argument("incident", shell_complete=_incident_names)
@_output_dir
@click.option("--head", metavar="SHA256", help="A chain head kept elsewhere: it must still be in the chain.")
def verify(incident: str, output_dir: Path, head: str | None) -> None:
    """Recompute every hash and seal of INCIDENT's evidence and incident log; one line per record changed, removed
    or inserted; then whether the seal key was used, and the chain's head."""
    _pulled(output_dir, incident)
    result = chain.verify(evidence_folder(output_dir, incident), head=head)
    for problem in result.problems:
        click.echo(escape.line(problem.line()))
    if not result.intact:
        click.echo(f"runbook: {incident}: {units.count(len(result.problems), 'problem')} in its evidence", err=True)
        sys.exit(NOT_INTACT)
    name, digest = result.last or ("none", "none")
    lines = f"{result.log_lines} incident log lines, " if result.log_lines else ""
    click.echo(
        f"{incident}: intact: {len(result.evidence)} evidence files, {lines}{result.artifacts} artifacts; "
        f"the chain ends at {escape.line(name)} (sha256 {digest})"
    )
    click.echo(result.seals())


@main.command(short_help="Write an incident's post-incident review (review.md, .html).")
@click.argument("incident", shell_complete=_incident_names)
@_output_dir
def report(incident: str, output_dir: Path) -> None:
    """Write the post-incident review of INCIDENT (review.md, review.html) from its evidence; print their paths."""
    from . import review  # mistune loads only for a report

    _pulled(output_dir, incident)
    loaded = load(output_dir, incident)
    for path in review.write(loaded, chain.verify(loaded.folder)):
        click.echo(path)


@main.command(short_help="Print (or --post) an incident's message from its evidence.")
@click.argument("incident", shell_complete=_incident_names)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(MESSAGE_KINDS + PAGERDUTY_KINDS),
    help="Which of the incident-response runbook's templates, or which PagerDuty event.",
)
@click.option("--post", is_flag=True, help="Send it to its channel (parameters/integrations.yaml) and record it.")
@click.option(
    "--integrations",
    type=click.Path(path_type=Path),
    help="Channels and the variables holding their secrets.  [default: parameters/integrations.yaml]",
)
@_output_dir
def comms(incident: str, kind: str, post: bool, integrations: Path | None, output_dir: Path) -> None:
    """Print the KIND message for INCIDENT, filled from its evidence; what it does not know stays [placeholder].

    With --post: send it (Slack, Statuspage or PagerDuty), one line per channel, and record what was sent in the
    incident's evidence (the last line printed is that file). Exit 1 when a post failed after its retries.
    """
    from . import notify
    from .notify import outbox

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    _pulled(output_dir, incident)
    loaded, channels = load(output_dir, incident), notify.load(integrations)
    if not post:
        click.echo(escape.plain(outbox.text(loaded, kind, channels, now)), nl=False)
        return
    outcome = outbox.post(loaded, kind, channels, now)
    for line in [*outcome.skipped, *(d.line() for d in outcome.deliveries)]:
        click.echo(escape.line(line))
    path = outbox.record(output_dir, loaded, kind, outcome, now, channels)
    if path:
        click.echo(path)
    if outcome.failed:
        click.echo(
            f"runbook: {incident}: {units.count(len(outcome.failed), 'message')} not delivered (recorded)", err=True
        )
        sys.exit(1)


@main.command(short_help="Close an incident once recovery is confirmed.")
@click.argument("incident", shell_complete=_incident_names)
@click.option("--force", "reason", metavar="REASON", help="Close without a recovered verify-recovery, saying why.")
@_output_dir
def close(incident: str, reason: str | None, output_dir: Path) -> None:
    """Close INCIDENT: needs verify-recovery's `recovery` finding saying recovered (or --force REASON); records the
    resolution in its evidence and prints when the post-incident review is due. Exit 4: not confirmed recovered."""
    from .closing import close as close_incident

    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    _pulled(output_dir, incident)
    closed = close_incident(output_dir, load(output_dir, incident), reason, now)
    for line in closed.lines:
        click.echo(escape.line(line))
    click.echo(closed.evidence)


@main.command(short_help="Simulate a pool exhaustion on a throwaway PostgreSQL; diagnose it.")
@_output_dir
def demo(output_dir: Path) -> None:
    """Start a throwaway PostgreSQL, induce a pool-exhaustion incident, run its runbook, clean up."""
    from runbooks_sandbox.demo import main as run_demo

    sys.exit(run_demo(output_dir))


@main.command(short_help="Start every runbook's targets mid-incident here, until Ctrl-C.")
def sandbox() -> None:
    """Start local targets for every runbook (PostgreSQL, Kubernetes API) mid-incident, until Ctrl-C."""
    from runbooks_sandbox.environment import main as run_sandbox

    sys.exit(run_sandbox())


@main.command(short_help="Run the routed runbook for each alert Alertmanager sends.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9095, show_default=True, type=click.IntRange(1, 65535))
@click.option("--env", help="Environment: parameters/<ENV>.yaml, under every run.")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="YAML file of parameters (repeatable); each applies to every routed runbook that takes it.",
)
@click.option(
    "--routes",
    type=click.Path(path_type=Path),
    help="Alert name -> runbook routing.  [default: parameters/alerts.yaml]",
)
@_output_dir
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16), help="Runs at a time.")
@click.option("--insecure-no-auth", is_flag=True, help="Accept alerts without the bearer token.")
@click.option(
    "--integrations",
    type=click.Path(path_type=Path),
    help="Where escalations are posted (Slack).  [default: parameters/integrations.yaml]",
)
@click.option(
    "--escalate-every",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds between looks for incidents to escalate.",
)
@click.option(
    "--queue",
    metavar="PATH|postgresql://...",
    help="The queue: an SQLite file of this service, or a PostgreSQL database that replicas share (best given in "
    "RUNBOOK_QUEUE: a password on the command line is seen by every user of the machine).  "
    "[default: OUTPUT_DIR/.serve/queue.sqlite3]",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    help="PostgreSQL queue: seconds a claimed run is held; a run whose replica died is taken over after it.  "
    "[default: --timeout + 60]",
)
@_timeouts
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=limits.STOP_GRACE_SECONDS,
    show_default=True,
    help="On SIGTERM: seconds the runs under way get to finish before they are ended (each leaves failed evidence).",
)
def serve(
    host,
    port,
    env,
    files,
    routes,
    output_dir,
    workers,
    insecure_no_auth,
    integrations,
    escalate_every,
    queue,
    lease,
    timeout,
    cell_timeout,
    grace,
) -> None:
    """Receive Alertmanager's webhook on POST /alerts and run the routed runbook of each firing alert; escalate
    incidents left unresolved at 30 min, 1 h and 2 h (posted to Slack when configured).

    The bearer token comes from RUNBOOK_WEBHOOK_TOKEN (exit 3 without it, unless --insecure-no-auth). SIGTERM or
    Ctrl-C: stop taking alerts, give the runs under way --grace seconds, end the others, exit 0. Exit 4: the queue
    cannot be used (damaged at start, or failing for good while serving).
    """
    import logging
    import os

    from . import notify, redact
    from .alerts import routing, service

    token = service.token_from_environment(insecure_no_auth)
    routed = routing.load(routes or routing.ROUTES, env, tuple(files))
    channels = notify.load(integrations)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limited = Limits(timeout, cell_timeout)
    queue = queue or os.environ.get(redact.QUEUE) or None
    if queue:
        os.environ[redact.QUEUE] = queue  # its password is then scrubbed, and kept from kernels, as the tool's own
    opened = service.open_queue(queue, output_dir, limited, lease)
    service.serve(routed, output_dir, workers, token, host, port, channels, escalate_every, limited, grace, opened)


if __name__ == "__main__":
    main()
