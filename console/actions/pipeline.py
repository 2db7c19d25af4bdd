"""Epoch Builder actions: the pipeline's commands as detached jobs on a server, and the Board.

Each form offers the options of its ``epoch-builder`` command and names the
server it runs on; ``launch`` starts the job (after the same preflight push
dispatch does) and follows its log.

The steps that combine the cluster's results (initialize, build, export,
verify: ``remote.steps``) read the controller's workspace, where dispatch and
pull gather everything: their pickers read it and they run there by default
(``run_step``). A user may pick a server in the form instead (ctrl+o); then
the console pushes exactly what the step reads, runs it there and pulls back
what it wrote, and says so in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from epoch_builder.errors import EpochBuilderError
from epoch_builder.workspace import CANDLESTICKS_DIR, CONFIG_DIR
from remote import steps
from remote.board import PROFITABLE_CONFIGS, REGRESSIONS, BatchSpec

from console.actions.spec import ActionSpec

if TYPE_CHECKING:  # pragma: no cover
    from console.app_interface import ConsoleApp
    from console.state import JobView

GROUP = "Epoch Builder"
NO_REGRESSIONS = "no trained regressions in the local workspace: pull trained regressions first (key R)"


async def launch(app: "ConsoleApp", args: list[str], *, server: str | None = None, follow: bool = True,
                 inputs: Sequence[str] = ()) -> "JobView | None":
    """Start ``epoch-builder <args>`` as a detached job and follow its log. ``inputs``: the workspace paths
    it reads, offered as a push first where the server lacks them or holds older versions.
    None: the user declined the push."""
    server = server or app.selected_server
    if inputs and not await preflight(app, args[0], server, inputs):
        return None
    job = await app.cluster.start_job(server, args)
    app.notify(f"started {args[0]} on {server} (job {job.id})")
    if follow:
        app.follow_log(job)
    return job


async def preflight(app: "ConsoleApp", command: str, server: str, inputs: Sequence[str]) -> bool:
    """What dispatch does before a job, for a job started by hand: push the inputs the server lacks."""
    if app.cluster.is_local(server):
        return True
    missing = await app.cluster.plan_push(server, inputs)
    if not missing:
        return True
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    if not await app.confirm(f"{server} lacks what {command} reads, or holds older versions: {shown} "
                             f"({len(missing)} file(s)). Push them first, then run?", "Push and run"):
        return False
    pushed = await app.cluster.push_paths(server, inputs)
    app.notify(f"pushed {pushed.files_sent} file(s) to {server} for {command}")
    return True


def step_places(app: "ConsoleApp") -> tuple[list[str], dict[str, str]]:
    """Where a combining step may run, the controller first (its default), with what each place means."""
    notes = {app.cluster.controller: "this workspace, which holds every pulled result"}
    notes.update({name: "its inputs are pushed first, its output pulled back" for name in app.cluster.servers})
    return [app.cluster.controller, *app.cluster.servers], notes


async def ask_step(app: "ConsoleApp", form: Any) -> tuple[Any, str]:
    """Show a combining step's form with the places it may run; (the form's answer, the chosen place)."""
    form.offer_places(*step_places(app))
    answer = await app.push_screen_wait(form)
    return answer, form.place or app.cluster.controller


async def run_step(app: "ConsoleApp", args: list[str], where: str) -> "JobView | None":
    """Run a combining step (``remote.steps``) where the user chose: on the controller, where its inputs are,
    or on a server after pushing them (its output pulled back). A missing input is one line naming it, the
    servers that hold it and the pull that brings it."""
    root = app.workspace.root
    files = steps.step_files(root, args)
    missing = steps.missing_inputs(root, files)
    if missing:
        others = [app.cluster.host(name) for name in app.cluster.servers]
        held = await steps.holders(others, missing) if others else {}
        raise EpochBuilderError(steps.missing_input_message(args[0], missing, held))
    if app.cluster.is_controller(where):
        return await launch(app, args, server=where)
    app.notify(f"{args[0]} on {where}: pushing the {len(files.reads)} path(s) it reads, then running it there")

    def started(info: Any) -> None:
        job = app.cluster.adopt_job(where, info)
        app.notify(f"started {args[0]} on {where} (job {job.id})")
        app.follow_log(job)

    run = await steps.run_on_server(app.cluster.host(where), args, root, started=started)
    await app.guarded(f"{args[0]} on {where}", app.cluster.refresh_job(where, run.job.job_id))  # the table: ended now
    if run.pulled is None:
        raise EpochBuilderError(run.account())
    app.notify(run.account(), timeout=20)
    return app.cluster.jobs.get(f"{where}/{run.job.job_id}")


def batch_inputs(app: "ConsoleApp", stage: str, batch: Any) -> list[str]:
    """The paths a batch's job reads: the rule dispatch pushes by (remote.board.BatchSpec)."""
    spec = BatchSpec(stage, batch.path.stem, batch.category or None)
    return spec.push_paths(app.workspace.active_epoch_id())


async def board(app: "ConsoleApp") -> None:
    from console.screens.board import BoardScreen  # batch board + auto-dispatch

    app.push_screen(BoardScreen())


async def import_candlesticks(app: "ConsoleApp") -> None:
    from console.screens.forms import ImportCandlesForm

    server = app.selected_server
    # The controller's workspace without candles: a newcomer's first step, so the sample is offered ticked.
    first_time = app.cluster.is_controller(server) and not app.workspace.bundle_file.exists()
    args = await app.push_screen_wait(ImportCandlesForm(server, sample=first_time))
    if args:
        await launch(app, args, server=server)  # its log ends with the import's report


def bundle_days(app: "ConsoleApp") -> float | None:
    """How many days the controller's imported candles cover (what create-epoch is pushed), None if unknown."""
    from epoch_builder.storage import read_json

    try:
        bundle = read_json(app.workspace.bundle_file)
        return (int(bundle["last_ct"]) + 1 - int(bundle["first_ot"])) / 86_400_000
    except (EpochBuilderError, KeyError, TypeError, ValueError):
        return None


async def create_epoch(app: "ConsoleApp") -> None:
    from console.screens.forms import CreateEpochForm

    args = await app.push_screen_wait(CreateEpochForm(bundle_days(app)))
    if args:
        await launch(app, args, inputs=[CANDLESTICKS_DIR])


async def generate_configs(app: "ConsoleApp") -> None:
    """On the controller: dispatch reads the batches from its workspace."""
    from console.screens.forms import FormField, OptionsForm

    server = app.cluster.controller
    options = await app.push_screen_wait(OptionsForm(f"Generate regression training configs on {server}", [
        FormField("grid", "grid file", hint=f"path on {server}; empty: the bundled 1,220-model grid"),
        FormField("force", "existing batches", "flag", hint="replace them (--force)"),
    ]))
    if options is None:
        return
    if options["force"] and not await app.confirm(
            f"Replace the epoch's existing training-config batches on {server}? Trained results stay, but the "
            "batches they came from are written again.", "Replace"):
        return
    await launch(app, ["generate-regression-training-configs", *(["--grid", options["grid"]] if options["grid"] else []),
                       *(["--force"] if options["force"] else [])], server=server, inputs=[CONFIG_DIR])


def train_form_fields() -> list[Any]:
    """The train form's fields: one per option of train-regression-batch's table, nothing declared here."""
    from remote.dispatch import TRAINING_OPTIONS

    from console.screens.forms import FormField

    return [FormField.of(option) for option in TRAINING_OPTIONS]


async def train_batch(app: "ConsoleApp") -> None:
    from remote.dispatch import TrainingOptions

    from console.screens.forms import OptionsForm
    from console.screens.pickers import BatchPicker
    from console.workspace_files import list_batches

    batches = list_batches(app.workspace)
    server = app.selected_server
    batch = await app.push_screen_wait(BatchPicker(batches, f"Train regression batch on {server}: choose a batch"))
    if not batch:
        return
    # The fields are train-regression-batch's options table; the form checks a value as the command does.
    options = await app.push_screen_wait(OptionsForm(f"Train {batch.path.stem} on {server}", train_form_fields(),
                                                     build=TrainingOptions.from_values))
    if options is None:
        return
    # The batch's name: the command finds it under regression_training_configs/<category>/ on any host;
    # the command line is the one dispatch sends (BatchSpec.argv).
    spec = BatchSpec(REGRESSIONS, batch.path.stem, batch.category or None)
    await launch(app, spec.argv(training=options), server=server, inputs=batch_inputs(app, REGRESSIONS, batch))


async def initialize_models(app: "ConsoleApp") -> None:
    from console.screens.pickers import RegressionPicker
    from console.workspace_files import list_regressions

    regressions = list_regressions(app.workspace)  # the controller's: where the step runs by default
    if not regressions:
        raise EpochBuilderError(NO_REGRESSIONS)
    args, where = await ask_step(app, RegressionPicker(regressions))
    if args:
        await run_step(app, args, where)


async def find_profitable(app: "ConsoleApp") -> None:
    from console.screens.pickers import BatchPicker
    from console.workspace_files import list_batches

    batches = list_batches(app.workspace, "configs")
    batch = await app.push_screen_wait(BatchPicker(batches, "Find profitable configs: choose a config batch"))
    if batch:
        await launch(app, ["find-profitable-configs", "--batch", batch.path.name],
                     inputs=batch_inputs(app, PROFITABLE_CONFIGS, batch))


async def build_models(app: "ConsoleApp") -> None:
    from console.screens.forms import NumberForm

    limit, where = await ask_step(app, NumberForm("Build prediction models", "limit (models kept)", 100, 1, 10_000_000))
    if limit:
        await run_step(app, ["build-prediction-models", "--top", str(limit)], where)


async def export_epoch(app: "ConsoleApp") -> None:
    from console.screens.pickers import ModelPicker
    from console.workspace_files import build_luck, list_build_models

    models = list_build_models(app.workspace)
    model_id, where = await ask_step(app, ModelPicker(models, build_luck(app.workspace, models)))
    if model_id:
        await run_step(app, ["export-epoch", "--model-id", model_id], where)


async def verify_epoch(app: "ConsoleApp") -> None:
    from console.screens.pickers import EpochFilePicker
    from console.workspace_files import list_epoch_files

    files = list_epoch_files(app.workspace)
    if not files:
        raise EpochBuilderError("no Epoch File in this workspace: export one first (`epoch-builder export-epoch`)")
    chosen, where = await ask_step(app, EpochFilePicker(files))
    if chosen:
        await run_step(app, ["verify-epoch", chosen.relative], where)


async def unit_tests(app: "ConsoleApp") -> None:
    server = app.selected_server
    app.following = None
    pane = app.log_pane
    pane.show_source(f"{server} · unit tests")
    code = await app.cluster.unit_tests(server, pane.view.append_lines)
    if code == 0:
        app.notify(f"unit tests passed on {server}")
    else:
        raise EpochBuilderError(f"unit tests on {server} failed with exit code {code} (see the log pane)")


ACTIONS = (
    ActionSpec("board", GROUP, "Board", "every batch of the epoch, its state, and auto-dispatch of a stage", "o",
               footer=True, run=board),
    ActionSpec("import_candlesticks", GROUP, "Import candlesticks",
               "candle files on the selected server, or the bundled sample, into candlesticks/", "I",
               command="candlesticks import", run=import_candlesticks),
    ActionSpec("create_epoch", GROUP, "Create epoch", "cut the candles, SMA + normalise, write config/epoch.json", "e",
               command="create-epoch", run=create_epoch),
    ActionSpec("generate_configs", GROUP, "Generate regression training configs", "write the hyperparameter grid as batches (on the controller, where dispatch reads them)",
               "g", command="generate-regression-training-configs", run=generate_configs),
    ActionSpec("train_batch", GROUP, "Train regression batch", "train one batch of regressions on the selected server", "t",
               command="train-regression-batch", run=train_batch),
    ActionSpec("initialize_models", GROUP, "Initialize prediction models", "assets + config batches from the chosen regressions (on the controller)",
               "i", command="initialize-prediction-models", run=initialize_models),
    ActionSpec("find_profitable", GROUP, "Find profitable configs", "backtest one config batch on the selected server", "p",
               command="find-profitable-configs", run=find_profitable),
    ActionSpec("build_models", GROUP, "Build prediction models", "rank profitable configs into build.json (on the controller)", "b",
               command="build-prediction-models", run=build_models),
    ActionSpec("export_epoch", GROUP, "Export epoch", "write the Epoch File for one model of the build (on the controller)", "x",
               command="export-epoch", run=export_epoch),
    ActionSpec("verify_epoch", GROUP, "Verify Epoch File", "check an Epoch File as the platform installs it, every model loaded (on the controller)",
               "v", command="verify-epoch", run=verify_epoch),
    ActionSpec("unit_tests", GROUP, "Unit tests", "run the project's test suite on the selected server", "u", run=unit_tests),
)
