"""The course: every notebook's structure, its execution with the installed
kernel, the new parts it must show (process code in the cells, straces, the
litmus table, the cluster engine's processes, the CPU strips), the HTML
exports (full and student editions), and checks that a sequential solution
fails.

The exports are made once per test session by notebooks/export.py, the same
script `./run.sh` uses, into a temporary folder (with a journal of
predictions of its own).
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COURSE = [
    "00-start-here",
    "01-why-concurrency",
    "02-processors",
    "03-clusters",
    "04-concurrency",
    "05-parallelism",
    "06-concurrency-support-types",
    "07-threads-of-processes",
    "08-processes-vs-threads",
    "09-recall",
]


def source(nb, kind):
    return "\n".join(c.source for c in nb.cells if c.cell_type == kind)


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def plain(html_text):
    """The text of an HTML page, tags removed (code is split into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def stored(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def outputs_text(cell):
    """Everything a cell printed or displayed as plain text (and error values)."""
    parts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            parts.append(o.get("data", {}).get("text/plain", ""))
        elif o.output_type == "error":
            parts.append(o.get("evalue", ""))
    return "\n".join(parts)


def all_text(nb):
    return "\n".join(outputs_text(c) for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Runs the course once: (full edition folder, student edition folder)."""
    out = tmp_path_factory.mktemp("course")
    full, student = out / "html", out / "student"
    env = dict(os.environ, THREADBOOK_JOURNAL=str(out / "journal.jsonl"))
    subprocess.run([sys.executable, str(NOTEBOOKS / "export.py"), "--out", str(full)], check=True, cwd=ROOT, env=env)
    subprocess.run(
        [sys.executable, str(NOTEBOOKS / "export.py"), "--out", str(student), "--student", "--reuse", str(full)],
        check=True,
        cwd=ROOT,
    )
    timings = json.loads((full / "timings.json").read_text())
    print("\ncourse execution times (s):", json.dumps(timings))
    return full, student


def executed(exports, name):
    return nbformat.read(exports[0] / f"{name}.ipynb", as_version=4)


# ---- the stored notebooks ----------------------------------------------------------------


def test_every_section_has_its_notebook():
    present = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert present == COURSE


@pytest.mark.parametrize("name", COURSE)
def test_notebook_is_stored_without_outputs(name):
    nb = stored(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a code cell has stored outputs"
            assert cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "threadbook"


@pytest.mark.parametrize("name", COURSE)
def test_notebook_structure(name):
    nb = stored(name)
    code = source(nb, "code")
    md = source(nb, "markdown")
    assert nb.cells[0].cell_type == "markdown" and ">" in nb.cells[0].source, "starts with the notes' words"
    assert re.search(r"std::thread|thread::(spawn|scope)", code), "uses std::thread"
    assert ":dep rayon" in code and re.search(r"par_iter|rayon::", code), "uses rayon"
    assert "Command::new(" in code, "starts child processes with std::process::Command in a cell"
    assert "<details>" in md and "<summary>" in md, "has a recall checkpoint"
    assert "todo!(" in code, "has an exercise stub"
    assert any("solution" in tags(c) for c in nb.cells), "has a solution cell"
    assert any("check" in tags(c) for c in nb.cells), "the checking cell is tagged check"


@pytest.mark.parametrize("name", COURSE)
def test_process_code_is_in_plain_sight(name):
    """The toolkit no longer runs the course's child processes for it."""
    code = source(stored(name), "code")
    assert not re.search(r"procs::run(_parallel)?\(|procs::Worker|work::run_threads", code), name


def test_toolkit_keeps_the_learner_part_apart():
    """What a learner calls is in toolkit/src/*.rs; scaffolding in src/course/ and the programs in src/bin/."""
    src = NOTEBOOKS / "toolkit" / "src"
    learner = sorted(p.name for p in src.glob("*.rs"))
    assert learner == ["chart.rs", "check.rs", "compare.rs", "display.rs", "lib.rs", "machine.rs", "measure.rs", "sweep.rs", "timeline.rs"]
    assert sorted(p.name for p in (src / "course").glob("*.rs")) == ["bins.rs", "demo.rs", "journal.rs", "mod.rs", "work.rs"]
    for path in src.rglob("*.rs"):
        text = path.read_text()
        for m in re.finditer(r"\n((?:[ \t]*///[^\n]*\n|[ \t]*#\[[^\n]*\n)*)[ \t]*pub (fn|struct|enum|const|static|trait|type) (\w+)", text):
            assert m.group(1).strip(), f"{path.name}: pub {m.group(2)} {m.group(3)} has no doc comment"


def test_timing_strip_in_three_notebooks():
    users = [n for n in COURSE if any(c.cell_type == "code" and c.source.startswith(":timing cell\n{") for c in stored(n).cells)]
    assert len(users) >= 3, users


# ---- executing the course ----------------------------------------------------------------


@pytest.mark.parametrize("name", COURSE)
def test_notebook_runs_with_charts(exports, name):
    nb = executed(exports, name)
    errors_outside_tagged = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "raises-exception" in tags(cell):
            assert errors, f"{name}: a cell tagged raises-exception did not fail:\n{cell.source}"
        elif "skip-execution" in tags(cell):
            assert cell.outputs == [] and cell.get("execution_count") is None, "a skip-execution cell ran"
        elif errors:
            errors_outside_tagged.append(cell.source)
    assert not errors_outside_tagged
    rich = [
        o.get("data", {}).get("text/html", "") + o.get("data", {}).get("image/svg+xml", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    ]
    assert any("<svg" in r for r in rich), f"{name}: no chart in the executed notebook"


def test_timing_strips_are_drawn(exports):
    strips = 0
    for name in COURSE:
        for cell in executed(exports, name).cells:
            if cell.cell_type == "code" and cell.source.startswith(":timing cell\n{"):
                htmls = [o.get("data", {}).get("text/html", "") for o in cell.outputs if o.output_type == "display_data"]
                assert any("<svg" in h and "ran " in h for h in htmls), f"{name}: no CPU strip under a :timing cell"
                strips += 1
    assert strips >= 3


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed")
@pytest.mark.parametrize("name", ["00-start-here", "08-processes-vs-threads"])
def test_strace_shows_how_a_child_starts(exports, name):
    text = all_text(executed(exports, name))
    assert 'execve("/bin/true"' in text
    assert "CLONE_VM|CLONE_VFORK" in text, "Command's posix_spawn: a vfork-style clone"
    if name.startswith("08"):
        assert "CLONE_THREAD" in text, "the thread's clone"
        assert re.search(r"clone\(child_stack=NULL, flags=[A-Z_|]*SIGCHLD", text), "fork's clone, without CLONE_VM"


def test_helper_threads_are_counted_not_asserted(exports):
    text = all_text(executed(exports, "07-threads-of-processes"))
    m = re.search(r"(\d+) thread\(s\) in /proc/self/task before this notebook spawned any", text)
    assert m, "the count is printed"
    assert ("single-threaded too" in text) == (m.group(1) == "1"), "the sentence follows the count"


def test_litmus_table(exports):
    text = all_text(executed(exports, "04-concurrency"))
    rows = {}
    for line in text.splitlines():
        m = re.match(r"(Relaxed|SeqCst)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            rows[m.group(1)] = [int(x) for x in m.groups()[1:]]
    assert set(rows) == {"Relaxed", "SeqCst"}, text
    for ordering, (trials, *counts) in rows.items():
        assert trials >= 1000, f"{ordering}: thousands of trials"
        assert sum(counts) == trials, f"{ordering}: every trial has one outcome"
    assert rows["SeqCst"][4] == 0, "r1 = r2 = 0 is impossible under SeqCst"
    assert re.search(r"Relaxed: \d+ of \d+ trials saw|Neither ordering showed", text), "the verdict follows the counts"


def test_fork_isolation_and_deadlock(exports):
    nb = executed(exports, "04-concurrency")
    text = all_text(nb)
    assert "so: the thread changed our memory; the children changed (and crashed with) only their own copies" in text
    assert "deadlock: both threads waited the full" in text
    assert "both finished: no deadlock; the money adds up to 2000" in text
    assert any("skip-execution" in tags(c) and "lock().unwrap()" in c.source for c in nb.cells), "the hand-interrupted deadlock"
    assert re.search(r"involuntary switches: \d+ with 2 threads, \d+ with 64", text)


def test_lost_process_prose_matches_the_kernel():
    """04's hand-interrupted deadlock and 08's finale say what the kernel does: restore by re-running, // no-replay, :replay off."""
    for name in ["04-concurrency", "08-processes-vs-threads"]:
        md = source(stored(name), "markdown")
        for words in ["restores", "// no-replay", ":replay off"]:
            assert words in md, f"{name}: {words!r}"
        assert "variables may be lost" not in md and "lists the variables that were lost" not in md


def test_finale_reports_the_restore(exports):
    finale = executed(exports, "08-processes-vs-threads").cells[-1]
    text = outputs_text(finale)
    errors = [o for o in finale.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "EvaluationProcessDied" and "SIGABRT" in text
    assert re.search(r"variables restored: |no variables to restore", text), text


def test_hard_stop_in_plain_sight():
    code = source(stored("08-processes-vs-threads"), "code")
    assert "try_wait()" in code and "child.kill()" in code and "ExitStatusExt" in code


def test_cluster_engine_runs_as_processes(exports):
    nb = executed(exports, "03-clusters")
    text = all_text(nb)
    row = re.search(r"2 processes × 1 worker \(TCP\)\s+\[(\d+), (\d+)\]", text)
    assert row and row.group(1) != row.group(2), "two processes with their own pids"
    pids = set(re.findall(r"^process \d+ \(pid (\d+)\):", text, re.M))
    assert len(pids) == 2
    assert re.search(r"^  worker 0 of 2 · process 0 ·", text, re.M) and re.search(r"^  worker 1 of 2 · process 1 ·", text, re.M)
    sent = [int(b) for b in re.findall(r"network: sent (\d+) bytes", text)]
    assert any(b > 0 for b in sent), "words crossed the network"
    assert re.search(r"every configuration's counts equal the one-thread count for all \d+ distinct words", text)
    assert "hung: killed after the" in text, "one missing process stops the computation"
    assert re.search(r"node 1's share \(\d+, \d+\) is redone by nodes \[0, 2\]", text), "the reassignment is deterministic"


def test_recall_grades_answers(exports):
    text = all_text(executed(exports, "09-recall"))
    assert re.search(r"written answers: \d+ of \d+ ideas · verdicts: \d of \d · predictions: \d+ of 7", text)
    assert "What is parallelism?" in text and "What is the difference between a thread and a process?" in text
    assert re.search(r"00 speedup of one thread per core", text), "earlier notebooks' predictions come back from the journal"


# ---- the HTML exports ----------------------------------------------------------------------


@pytest.mark.parametrize("name", COURSE)
def test_html_exports(exports, name):
    full, student = exports
    page = (full / f"{name}.html").read_text()
    assert "<svg" in page, "charts inline"
    assert "<details>" in page and "<summary>" in page, "checkpoint answers present"
    nb = nbformat.read(full / f"{name}.ipynb", as_version=4)
    solutions = [c for c in nb.cells if "solution" in tags(c)]
    student_nb = nbformat.read(student / f"{name}.ipynb", as_version=4)
    assert not [c for c in student_nb.cells if "solution" in tags(c)]
    full_text = plain(page)
    student_text = plain((student / f"{name}.html").read_text())
    others = "\n".join(c.source for c in nb.cells if "solution" not in tags(c))
    for cell in solutions:
        # a line only the solution has must be in the full edition, not the student one
        own = [l.strip() for l in cell.source.splitlines() if len(l.strip()) > 12 and l.strip() not in others]
        assert own, f"{name}: the solution cell repeats other cells"
        assert own[0] in full_text
        assert own[0] not in student_text, own[0]
    assert (full / "index.html").exists() and (student / "index.html").exists()


@pytest.mark.parametrize("name", COURSE)
def test_student_edition_gives_nothing_away(exports, name):
    full = executed(exports, name)
    student = nbformat.read(exports[1] / f"{name}.ipynb", as_version=4)
    code = [c for c in student.cells if c.cell_type == "code"]
    # no output under a checking cell, nor under the cell after a removed solution
    for i, cell in enumerate(full.cells):
        if "solution" in tags(cell):
            nxt = next(c for c in full.cells[i + 1:] if c.cell_type == "code")
            twin = next(c for c in code if c.source == nxt.source)
            assert twin.outputs == [] and twin.get("execution_count") is None
    for cell in code:
        if "check" in tags(cell):
            assert cell.outputs == [], f"{name}: a checking cell kept its output"
    assert not any("✓" in outputs_text(c) for c in code), f"{name}: a ✓ earned by the solution is visible"
    # between a prediction and the last cell that reads it, no output
    for i, cell in enumerate(code):
        for var in re.findall(r"\blet\s+(my_\w+)", cell.source):
            uses = [j for j, c in enumerate(code) if j > i and re.search(rf"\b{var}\b", c.source)]
            assert uses, f"{name}: {var} is never used"
            for c in code[i + 1: max(uses) + 1]:
                assert c.outputs == [], f"{name}: output visible before {var} is compared:\n{c.source[:120]}"
    # execution counts renumbered 1..n
    counts = [c.execution_count for c in code if c.get("execution_count") is not None]
    assert counts == list(range(1, len(counts) + 1)), counts
    for c in code:
        for o in c.outputs:
            if o.output_type == "execute_result":
                assert o.execution_count == c.execution_count


# ---- checks that test the concurrency ----------------------------------------------------

SEQUENTIAL = {
    "01-why-concurrency": """fn serve_squares(clients: u64, square: &(dyn Fn(u64) -> u64 + Sync)) -> u64 {
    // the clients at once, but the server answers one connection after another
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::scope(|s| {
        let answers: Vec<_> = (0..clients).map(|x| s.spawn(move || {
            let stream = TcpStream::connect(addr).unwrap();
            let mut w = &stream;
            writeln!(w, "{x}").unwrap();
            let mut reply = String::new();
            BufReader::new(&stream).read_line(&mut reply).unwrap();
            reply.trim().parse::<u64>().unwrap()
        })).collect();
        for _ in 0..clients {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let mut w = &stream;
            writeln!(w, "{}", square(line.trim().parse().unwrap())).unwrap();
        }
        answers.into_iter().map(|h| h.join().unwrap()).sum()
    })
}""",
    "04-concurrency": """fn count_locally(threads: usize, per_thread: u64, started: &(dyn Fn() + Sync)) -> u64 {
    // one thread after another: never all counting at once
    (0..threads).map(|_| std::thread::scope(|s| s.spawn(|| { started(); per_thread }).join().unwrap())).sum()
}""",
    "00-start-here": """fn in_parallel(parts: &[(u64, u64)], f: &(dyn Fn(u64, u64) -> u64 + Sync)) -> u64 {
    // one thread at a time: started, joined, then the next
    parts.iter().fold(0u64, |acc, &(lo, hi)| acc.wrapping_add(std::thread::scope(|s| s.spawn(move || f(lo, hi)).join().unwrap())))
}""",
    "06-concurrency-support-types": """fn sum_by_channel(parts: &[(u64, u64)], sum_part: &(dyn Fn(u64, u64) -> u64 + Sync)) -> u64 {
    let (tx, rx) = mpsc::channel::<u64>();
    for &(lo, hi) in parts { tx.send(sum_part(lo, hi)).unwrap(); } // computed here, in sequence
    drop(tx);
    rx.iter().fold(0, u64::wrapping_add)
}""",
    "07-threads-of-processes": """fn distinct_tids(n: usize, visit: &(dyn Fn() + Sync)) -> u64 {
    // one thread at a time: usually distinct TIDs, but never alive together
    let ids: std::collections::HashSet<u64> = (0..n)
        .map(|_| std::thread::scope(|s| s.spawn(|| { visit(); os_tid() }).join().unwrap()))
        .collect();
    ids.len() as u64
}""",
    "09-recall": """fn parallel_exit_sum(commands: Vec<Command>) -> u64 {
    commands.into_iter().map(|mut c| c.status().unwrap().code().unwrap_or(0) as u64).sum() // one after another
}""",
}


def test_sequential_solutions_fail_the_checks():
    """Each notebook's setup cell, a sequential solution and the notebook's checking cell, in one kernel:
    every checking cell must fail, saying the parts did not run at the same time."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "threadbook", "display_name": "Rust (threadbook)", "language": "rust"}
    checks = []
    for name, solution in SEQUENTIAL.items():
        course = stored(name)
        setup = next(c for c in course.cells if c.cell_type == "code")
        check = next(c for c in course.cells if "check" in tags(c))
        nb.cells += [nbformat.v4.new_code_cell(setup.source), nbformat.v4.new_code_cell(solution), nbformat.v4.new_code_cell(check.source)]
        checks.append((name, len(nb.cells) - 1))
    NotebookClient(nb, kernel_name="threadbook", timeout=600, allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for i, cell in enumerate(nb.cells):
        if (i + 1) % 3 != 0:
            assert not [o for o in cell.outputs if o.output_type == "error"], f"cell {i} failed:\n{outputs_text(cell)}"
    for name, i in checks:
        errors = [o for o in nb.cells[i].outputs if o.output_type == "error"]
        assert errors, f"{name}: a sequential solution passed the check"
        assert "at the same time" in outputs_text(nb.cells[i]), f"{name}: {outputs_text(nb.cells[i])}"
