"""The learner mode: ``pytest --exercises`` runs the chapter tests against the learner's kernels.

Two runs of the chapter tests in a subprocess pin the mode down: with the untouched stubs every failure must be
the stub's "not implemented yet" message (the stubs are reached, and nothing else breaks); with the reference
solutions copied into a folder of their own, every chapter test must pass (exercise mode itself changes
nothing but whose kernels run). The in-process tests check the switch, the stubs and the progress report.
"""
import ast
import hashlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

import tinyxception.functional as F
from tinyxception import exercise_mode
from tinyxception.exercise_mode import EXERCISES, PACKAGE_FOLDER, learner_function
from tinyxception.exercise_cases import CASES
from tinyxception.exercise_report import check_exercise, verdict
from tinyxception.models.xception import DownBlock, MiddleBlock

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ["ch1_autograd", "ch2_conv", "ch3_norm_pool", "ch4_xception", "ch5_training"]
NOT_IMPLEMENTED = "not implemented yet"

pytestmark = pytest.mark.skipif(exercise_mode.exercise_folder() is not None,
                                reason="checks the exercise mode from outside; run it in reference mode")


REFERENCE_TIER = ROOT / "tinyxception" / "kernels" / "reference"
LEARNER_SOLUTIONS = ROOT / "tests" / "learner_solutions"
STUBS_SHA256 = {  # the shipped stubs; a changed stub changes its hash here too
    "autograd.py": "4f3e97ddebe0c877e3c485006257528974cf87fdd969aac173d2850536481ef1",
    "conv.py": "100a333ed1fec2fa98c303e8d94e60ed07b64a034c755aa2fed842ac04d1a699",
    "norm.py": "a1cfe3485141c8750d8dad331e12a0f8099059b3eee097e89b7e35a44d21bd03",
    "pool.py": "7e4f32a5a5f8aa3e6a1878000d192a86e1acc29de199668418b8266c5c1c8046",
    "network.py": "8d10164a50a17602650760ab4cec290b47eac191e08d8cc44972e99f3f5730f2",
    "training.py": "ae14f38482624ff2b4e6d948a4a5153e822ae2dd280ba73217c282fb93990281",
}


def stubs_problem() -> str | None:
    """Why tinyxception/exercises/ does not hold the shipped stubs (None when it does)."""
    edited = [name for name, digest in STUBS_SHA256.items()
              if hashlib.sha256((PACKAGE_FOLDER / name).read_bytes()).hexdigest() != digest]
    return f"your exercise files {edited} are edited (these checks need the untouched stubs)" if edited else None


def edited_in_this_checkout() -> bool | None:
    """Whether git sees local changes in tinyxception/exercises/ (None without git or outside a checkout)."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--", str(PACKAGE_FOLDER)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return bool(done.stdout.strip()) if done.returncode == 0 else None


def needs_untouched_stubs(test):
    """Run `test` only while the package's exercise files are the shipped stubs, so that a learner who solved
    them in place still gets a passing `pytest`. Where git says the files are as committed (a clean clone, as
    in CI) but their hashes differ, STUBS_SHA256 is out of date: an error, never a silent skip."""
    problem = stubs_problem()
    if problem and edited_in_this_checkout() is False:
        raise AssertionError(f"{problem}, yet git sees no change: update STUBS_SHA256 in tests/test_exercises.py")
    return pytest.mark.skipif(problem is not None, reason=problem or "")(test)


def write_reference_folder(folder: Path, log: Path | None = None) -> Path:
    """A learner folder holding the reference tier's files themselves (kernels/reference/*.py, the plain
    solutions). With a `log`, each exercise function appends its name there on its first call, so a test can
    see which kernels the library took from the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in sorted({e.module for e in EXERCISES.values()}):
        source = (REFERENCE_TIER / f"{module}.py").read_text()
        names = [name for name, e in EXERCISES.items() if e.module == module]
        if log is not None:
            source += LOGGED.format(log=str(log), names=names)
        (folder / f"{module}.py").write_text(source)
    return folder


LOGGED = """

def _logged(name, solution, called=set()):
    def logged(*args):
        if name not in called:
            called.add(name)
            with open({log!r}, "a") as log:
                log.write(name + "\\n")
        return solution(*args)
    return logged


for _name in {names!r}:
    globals()[_name] = _logged(_name, globals()[_name])
"""


def append_function(folder: Path, module: str, source: str) -> None:
    """Add (or redefine) a function at the end of a learner's module, as a learner editing the file would."""
    with open(folder / f"{module}.py", "a") as file:
        file.write("\n\n" + source)


def run_chapters(tmp_path: Path, option: str | None, chapters=CHAPTERS, environment=None):
    """Run the chapters' tests in a subprocess (with `option`, e.g. --exercises, and `environment` variables);
    (exit code, junit <testcase> elements)."""
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *([option] if option else []),
               "-m", " or ".join(chapters), f"--junitxml={report}", "--hypothesis-profile=exercise-mode-check"]
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TINYXCEPTION_KERNELS": "fast",
                   "TINYXCEPTION_EXERCISES": "0", **(environment or {})}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=environment)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, list(ElementTree.parse(report).getroot().iter("testcase"))


def problem_text(case: ElementTree.Element) -> str | None:
    """The failure or error text of a junit test case, or None when it passed or was skipped."""
    for tag in ("failure", "error"):
        element = case.find(tag)
        if element is not None:
            return (element.get("message") or "") + (element.text or "")
    return None


def chapter_of(case: ElementTree.Element) -> str:
    """The chapter marker of the test file a junit case comes from, or, for the per-exercise tests (whose
    chapter is that of the exercise named in the test's id), the exercise's chapter."""
    source = (ROOT / "tests" / (case.get("classname").split(".")[-1] + ".py")).read_text()
    return next((chapter for chapter in CHAPTERS if f"pytest.mark.{chapter}" in source), None) or \
        next(entry.chapter for name, entry in EXERCISES.items() if name in case.get("name"))


@pytest.mark.slow
@needs_untouched_stubs
def test_untouched_stubs_fail_every_chapter_with_the_not_implemented_message(tmp_path):
    """With the stubs as shipped, each chapter has failing tests, every failure is a stub's "not implemented
    yet" (a different error would mean the mode broke something else), and the tests that never touch the
    kernels (optimiser arithmetic, data, ...) still pass."""
    code, cases = run_chapters(tmp_path, "--exercises")
    problems = {case.get("name") + " in " + case.get("classname"): problem_text(case) for case in cases}
    failed = {name: text for name, text in problems.items() if text is not None}
    assert code == 1 and failed
    wrong = {name: text[:300] for name, text in failed.items() if NOT_IMPLEMENTED not in text}
    assert not wrong, f"failures that are not the stubs' message: {wrong}"
    failing_chapters = {chapter_of(case) for case in cases if problem_text(case) is not None}
    assert failing_chapters == set(CHAPTERS)
    passed = [case for case in cases if problem_text(case) is None and case.find("skipped") is None]
    assert {chapter_of(case) for case in passed} >= {"ch1_autograd", "ch5_training"}


def assert_all_pass(code, cases, at_least):
    """Every junit case passed or was skipped (none failed), and there were at least `at_least` of them."""
    failed = {case.get("name"): problem_text(case)[:300] for case in cases if problem_text(case) is not None}
    assert code == 0 and not failed, failed
    assert len(cases) >= at_least


@pytest.mark.slow
def test_reference_tier_files_as_a_learner_folder_pass_every_chapter(tmp_path):
    """The reference tier's own files (kernels/reference/*.py) copied into a learner folder: every chapter test
    passes in learner mode, and the log shows that the chapter tests called every exercise function of the
    folder (so each exercise is tested, and the kernels really came from the folder)."""
    log = tmp_path / "imported.txt"
    folder = write_reference_folder(tmp_path / "my_kernels", log)
    assert_all_pass(*run_chapters(tmp_path, f"--exercises-dir={folder}"), at_least=300)
    assert sorted(log.read_text().split()) == sorted(EXERCISES)


FIRST_EXERCISES = ("topological_order", "depthwise_conv2d_forward", "depthwise_conv2d_backward",
                   "pointwise_conv2d_forward", "pointwise_conv2d_backward", "batch_norm_backward",
                   "max_pool2d_backward", "global_avg_pool2d_backward")
"""The course's first eight exercises, in autograd.py, conv.py, norm.py and pool.py: a learner's folder from then
has only these."""


def write_first_exercises_folder(folder: Path) -> Path:
    """tests/learner_solutions/ as a learner who did the course before the later exercises existed has it: the
    modules of the first eight exercises, without the functions of any later exercise."""
    folder.mkdir()
    later = set(EXERCISES) - set(FIRST_EXERCISES)
    for module in sorted({EXERCISES[name].module for name in FIRST_EXERCISES}):
        tree = ast.parse((LEARNER_SOLUTIONS / f"{module}.py").read_text())
        tree.body = [node for node in tree.body if getattr(node, "name", None) not in later]
        (folder / f"{module}.py").write_text(ast.unparse(tree) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("exercises", ["all", "first-eight"])
def test_plain_learner_solutions_written_independently_pass_chapters_1_to_3(tmp_path, exercises):
    """tests/learner_solutions/ holds solutions written as a new learner writes them (np.pad, einsum, a
    step-by-step batch-norm backward, `import numpy as np`), independently of the library: any correct solution
    must pass, whatever memory layout it returns. A folder from before the later exercises existed (only the
    first eight) passes too: what it lacks runs on the reference tier, and its own tests are skipped."""
    folder = LEARNER_SOLUTIONS if exercises == "all" else write_first_exercises_folder(tmp_path / "first")
    assert_all_pass(*run_chapters(tmp_path, f"--exercises-dir={folder}", CHAPTERS[:3]), at_least=150)


def test_a_folder_without_the_later_exercises_reports_them_as_not_started(tmp_path):
    """The check of an exercise the learner's folder does not define yet says "not implemented yet" (it is not a
    pass, although the library runs the reference in its place), while the first eight still pass."""
    folder = write_first_exercises_folder(tmp_path / "first")
    assert check_exercise("depthwise_conv2d_forward", folder)[0] == "pass"
    for name in ("conv2d_forward", "relu_forward", "sgd_momentum_step"):
        assert check_exercise(name, folder)[0] == "not started"
        assert "not implemented yet" in verdict(name, folder)


@pytest.mark.slow
def test_the_chapters_pass_on_the_reference_tier(tmp_path):
    """TINYXCEPTION_KERNELS=reference runs the whole library on the plain kernels: chapters 1-4 (autograd,
    convolutions, normalisation and pooling, the network with its Keras comparisons) pass on them, on the CPU
    and on the CuPy stand-in."""
    assert_all_pass(*run_chapters(tmp_path, None, CHAPTERS[:4], {"TINYXCEPTION_KERNELS": "reference"}),
                    at_least=300)


@needs_untouched_stubs
def test_every_stub_raises_its_hint(tmp_path):
    """Each stub shipped in tinyxception/exercises/ raises NotImplementedError whose message names the
    exercise, its file, a notebook that exists and the pytest command of a registered chapter marker."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name, entry in EXERCISES.items():
        stub = learner_function(name, PACKAGE_FOLDER)
        with pytest.raises(NotImplementedError) as raised:
            stub(*CASES[name][0].arguments())
        message = str(raised.value)
        assert message.startswith(f"{NOT_IMPLEMENTED}: {name} in exercises/{entry.module}.py")
        assert (ROOT / "notebooks" / f"{entry.notebook}.ipynb").exists() and entry.notebook in message
        assert f"pytest --exercises -m {entry.chapter}" in message and f'"{entry.chapter}:' in pyproject
        assert f"tx.exercises.check('{name}')" in message and f"pytest --exercises -m ex_{name}" in message


def test_exercise_mode_calls_the_learner_function_and_reference_mode_does_not(tmp_path):
    """The switch itself: with a folder whose pointwise forward returns zeros, F.pointwise_conv2d returns zeros;
    switched off again, the library's own result is back."""
    folder = write_reference_folder(tmp_path)
    append_function(folder, "conv", "def pointwise_conv2d_forward(x, w, solution=pointwise_conv2d_forward):\n"
                                    "    return 0 * solution(x, w)\n")
    x, w = np.ones((1, 2, 3, 3)), np.ones((4, 2, 1, 1))
    try:
        exercise_mode.use_exercises(folder)
        assert np.all(F.pointwise_conv2d(x, w).numpy() == 0)
    finally:
        exercise_mode.use_exercises(None)
    np.testing.assert_allclose(F.pointwise_conv2d(x, w).numpy(), np.full((1, 4, 3, 3), 2.0))


def test_an_edited_learner_file_is_used_at_the_next_call(tmp_path):
    """A learner fixes their file while the library runs (a notebook kernel that stays alive): the next call
    uses the new code, without switching learner mode off and on."""
    folder = write_reference_folder(tmp_path)
    x, w = np.ones((1, 2, 3, 3)), np.ones((4, 2, 1, 1))
    try:
        exercise_mode.use_exercises(folder)
        append_function(folder, "conv", "def pointwise_conv2d_forward(x, w, solution=pointwise_conv2d_forward):\n"
                                        "    return 0 * solution(x, w)\n")
        assert np.all(F.pointwise_conv2d(x, w).numpy() == 0)
        append_function(folder, "conv", "def pointwise_conv2d_forward(x, w, solution=pointwise_conv2d_forward):\n"
                                        "    return 3 + 0 * solution(x, w)  # edited again, same length\n")
        assert np.all(F.pointwise_conv2d(x, w).numpy() == 3)
    finally:
        exercise_mode.use_exercises(None)


def test_bad_exercise_folders_give_clear_errors(tmp_path):
    """A folder that does not exist, a missing module file and a missing function each say what is missing."""
    with pytest.raises(ValueError, match="existing directory"):
        exercise_mode.use_exercises(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="conv.py"):
        exercise_mode.learner_function("pointwise_conv2d_forward", tmp_path)
    (tmp_path / "conv.py").write_text("x = 1\n")
    with pytest.raises(AttributeError, match="defines no function pointwise_conv2d_forward"):
        exercise_mode.learner_function("pointwise_conv2d_forward", tmp_path)


def run_report(*args) -> str:
    """The output of ``python -m tinyxception exercises`` with `args`."""
    done = subprocess.run([sys.executable, "-m", "tinyxception", "exercises", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_untouched_stubs
def test_progress_report_of_the_stubs_and_of_the_reference_solutions(tmp_path):
    """The report lists every exercise: all "not started" for the untouched stubs, all "pass" for the reference
    solutions in a folder."""
    stubs, solutions = run_report(), run_report("--folder", str(write_reference_folder(tmp_path)))
    for name in EXERCISES:
        assert any(name in line and line.rstrip().endswith("not started") for line in stubs.splitlines())
        assert any(name in line and line.rstrip().endswith("pass") for line in solutions.splitlines())
    assert f"0 of {len(EXERCISES)} pass" in stubs and f"{len(EXERCISES)} of {len(EXERCISES)} pass" in solutions


@pytest.mark.parametrize("body, reason", [
    ("return 0 * solution(x, w)", "case 1 of 3, one image: x (1, 3, 4, 4) float64, w (4, 3, 1, 1): values differ"),
    ("return solution(x, w)[:, :1]", "shape"),
    ("raise IndexError('off by one')", "IndexError: off by one"),
])
def test_progress_report_says_why_an_exercise_fails(tmp_path, body, reason):
    """A wrong result, a wrong shape and a crash each show as "fail" with the reason, not as a traceback."""
    folder = write_reference_folder(tmp_path)
    append_function(folder, "conv", f"def pointwise_conv2d_forward(x, w, solution=pointwise_conv2d_forward):\n"
                                    f"    {body}\n")
    status, detail = check_exercise("pointwise_conv2d_forward", folder)
    assert status == "fail" and reason in detail
    assert check_exercise("pointwise_conv2d_backward", folder) == ("pass", "3 cases")


def test_progress_report_checks_that_an_order_is_topological(tmp_path):
    """topological_order has many right answers, so the report checks the property (each tensor once, after
    its inputs) rather than equality: the reversed reference order fails, the reference order passes."""
    folder = write_reference_folder(tmp_path)
    append_function(folder, "autograd", "def topological_order(root, solution=topological_order):\n"
                                        "    return solution(root)[::-1]\n")
    assert check_exercise("topological_order", folder) == (
        "fail", "case 1 of 2, a tensor used twice (c = a * b + a) and a branch without gradient: "
                "a tensor comes before one of its inputs")


def test_report_and_tests_agree_on_the_reference_graph():
    """The graph the report uses has a tensor used twice; its order holds each tensor that needs a gradient
    exactly once, whatever the number of uses."""
    (root,) = CASES["topological_order"][0].arguments()
    order = exercise_mode.reference("topological_order")(root)
    assert order[-1] is root and len({id(t) for t in order}) == len(order) == 7


@needs_untouched_stubs
def test_environment_variable_switches_scripts_to_the_learner_kernels(tmp_path):
    """TINYXCEPTION_EXERCISES=1 (read at import) puts a plain script in exercise mode: F.depthwise_conv2d reaches
    the untouched stub; =<folder> takes the kernels from that folder; =0 or =off (like TINYXCEPTION_DEBUG), the
    library's own kernels run."""
    script = ("import numpy as np, tinyxception.functional as F\n"
              "try:\n    F.depthwise_conv2d(np.ones((1, 2, 4, 4)), np.ones((2, 1, 3, 3)))\n    print('ran')\n"
              "except NotImplementedError as err:\n    print(err)\n")
    folder = write_reference_folder(tmp_path / "kernels")
    outputs = {}
    for value in ("1", str(folder), "0", "off"):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, exercise_mode.ENVIRONMENT_VARIABLE: value})
        outputs[value] = done.stdout.strip()
    assert outputs["1"].startswith(f"{NOT_IMPLEMENTED}: depthwise_conv2d_forward")
    assert outputs[str(folder)] == outputs["0"] == outputs["off"] == "ran"


def test_progress_report_refuses_a_missing_folder(tmp_path):
    """A folder that does not exist: one line on stderr naming it and exit code 2, no traceback."""
    done = subprocess.run([sys.executable, "-m", "tinyxception", "exercises", "--folder", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and "existing directory" in done.stderr and str(tmp_path / "nowhere") in done.stderr
    assert "Traceback" not in done.stderr


def with_learners_blocks(model, folder):
    """`model` with its down blocks (entry blocks 2-4, exit block 13) and middle-flow blocks replaced by the
    learner's down_block and middle_flow_block from `folder`, built from the library block's channel counts,
    into which the library block's parameters and buffers are copied in order (so the network keeps its weights)."""
    down, middle = (learner_function(name, folder) for name in ("down_block", "middle_flow_block"))
    for path, block in model.blocks():
        rng = np.random.default_rng(1)
        if isinstance(block, DownBlock):
            first, second = block.sepconv1.pointwise, block.sepconv2.pointwise
            mine = down(first.in_channels, first.out_channels, second.out_channels, rng, block.leading_relu)
        elif isinstance(block, MiddleBlock):
            mine = middle(block.sepconv1.pointwise.in_channels, rng)
        else:
            continue
        for ours, theirs in zip(mine.parameters(), block.parameters()):
            ours.data[...] = theirs.data
        for (_, ours), (_, theirs) in zip(mine.named_buffers(), block.named_buffers()):
            ours[...] = theirs
        flow, name = path.split(".")
        setattr(getattr(model, flow), name, mine)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("solutions", ["reference tier", "independent"])
def test_the_xception_built_on_a_learners_kernels_is_the_librarys(tmp_path, solutions):
    """The goal of the course: with a learner's folder of correct solutions of every exercise (the reference
    tier's files, or the independent ones of tests/learner_solutions/), tx.Xception with its four down blocks and
    eight middle-flow blocks built by the learner's down_block and middle_flow_block (the library's weights copied
    in) runs on the learner's own
    kernels, has the paper's 22,855,952 trainable parameters, and gives the fast tier's logits to float32 rounding
    (on a 2 x 3 x 71 x 71 batch, the smallest input the network takes) and, in one training-mode forward and
    backward, its first layer's weight gradient; with one SGD-with-momentum step after it, every exercise was
    called (seen in the reference tier's folder, whose functions log their calls)."""
    import tinyxception as tx
    folder = write_reference_folder(tmp_path / "my_kernels", log=tmp_path / "called.txt") \
        if solutions == "reference tier" else LEARNER_SOLUTIONS
    x = np.random.default_rng(0).standard_normal((2, 3, 71, 71)).astype(np.float32)
    outputs = {}
    for choice in (folder, None):  # None: learner mode off, the fast tier
        model = tx.Xception(seed=0)  # the same weights each time, before any running statistic moves
        model = with_learners_blocks(model, folder) if choice else model
        exercise_mode.use_exercises(choice)
        try:
            with tx.no_grad():
                logits = model.eval()(x).numpy()
            model.train()
            for p in model.parameters():
                p.grad = None
            loss = F.cross_entropy(model(x), np.array([1, 2]))
            loss.backward()
            outputs[str(choice)] = logits, next(iter(model.parameters())).grad.copy(), tx.count_parameters(model)
            tx.optim.SGD(model, lr=0.01, momentum=0.9).step()  # and the training step's update
        finally:
            exercise_mode.use_exercises(None)
    (ours, our_grad, count), (library, library_grad, _) = outputs[str(folder)], outputs["None"]
    assert count == 22_855_952
    assert np.abs(ours - library).max() <= 1e-4 * np.abs(library).max()
    # the first conv's weight gradient has come back through all 36 layers in float32, where the two tiers'
    # different summation orders add up (measured: 0.36% of its largest entry, the same as the reference tier's)
    assert np.abs(our_grad - library_grad).max() <= 1e-2 * np.abs(library_grad).max()
    if solutions == "reference tier":
        assert sorted(set((tmp_path / "called.txt").read_text().split())) == sorted(EXERCISES)
