"""The docs runner itself: a page that lies must fail, one that tells the truth must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import runner
from tests.docs.matching import mismatch
from tests.docs.pages import PageError, commands, exec_form, is_server, read_page
from tests.docs.runner import ExampleFailed, PageRun


def test_shown_lines_match_in_order_with_wildcards() -> None:
    printed = "header\nid: abc-123   status:   complete\n\nfooter\n"
    assert mismatch(["header", "id: ...  status: complete"], printed) is None
    assert mismatch(["...", "footer"], printed) is None
    assert mismatch(["id: ... status: complete"], printed) is not None  # not the first line
    assert mismatch(["header", "footer"], printed) is not None  # not next to each other
    assert mismatch(["header", "status: errored"], printed) is not None


def write(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def run(tmp_path: Path, text: str) -> int:
    project = tmp_path / "project"
    project.mkdir(parents=True)
    return PageRun(read_page(write(tmp_path, text)), project).run()


def test_files_scripts_and_commands_run_in_order(tmp_path: Path) -> None:
    page = """# Page

```python title="hello.py"
print("hello from a file")
```

```console
$ python hello.py
hello from a file
```

```python
import pathlib
print(pathlib.Path("hello.py").exists())
```

```text title="Output"
True
```

<!-- docs: hidden
```console
$ test -f hello.py
```
-->
"""
    assert run(tmp_path, page) == 3


def test_export_takes_what_bash_makes_of_the_value(tmp_path: Path) -> None:
    page = """# Page

```console
$ echo s3cret > token
$ export TOKEN=$(cat token)
$ export WHERE="$TOKEN at $HOME"
$ echo "$WHERE"
s3cret at ...
```
"""
    assert run(tmp_path, page) == 1


@pytest.mark.parametrize(
    "page",
    [
        "```console\n$ echo one\ntwo\n```\n",
        "```console\n$ false\n```\n",
        "<!-- docs: fails -->\n```console\n$ true\n```\n",
        "```python\nraise SystemExit(3)\n```\n",
        "```python\nprint('yes')\n```\n\n```text title=\"Output\"\nno\n```\n",
        "```toml\nkey = = 1\n```\n",
        "<!-- docs: fails -->\n```console\n$ no-such-command-anywhere\n```\n",
        "```console\n$ cd\n```\n",
    ],
)
def test_a_page_that_lies_fails(tmp_path: Path, page: str) -> None:
    with pytest.raises(ExampleFailed):
        run(tmp_path, page)


def test_many_wildcards_against_a_long_log_still_answer() -> None:
    # Every split is tried once: without memory, this took minutes before failing.
    shown = [line for n in range(30) for line in ("...", f"line {n} ... done")] + ["missing"]
    printed = "\n".join(f"line {n} step done" for n in range(200))
    assert mismatch(shown, printed) is not None
    assert mismatch(shown[:-1], printed) is None


def test_skips_need_reasons_and_directives_need_blocks(tmp_path: Path) -> None:
    with pytest.raises(PageError, match="needs a reason"):
        read_page(write(tmp_path, "<!-- docs: skip -->\n```sh\nexit 1\n```\n"))
    with pytest.raises(PageError, match="not followed by a code block"):
        read_page(write(tmp_path, "<!-- docs: fails -->\nSome prose.\n"))
    with pytest.raises(PageError, match="unknown docs directive"):
        read_page(write(tmp_path, "<!-- docs: frobnicate -->\n"))
    page = "<!-- docs: skip needs a real account -->\n```sh\nexit 1\n```\n"
    skipped = read_page(write(tmp_path, page))
    assert skipped.blocks[0].skip == "needs a real account"


def test_console_commands_keep_their_output_and_continuations() -> None:
    from tests.docs.pages import Block

    block = Block("console", None, "$ wf trigger shop \\\n    --params '{}'\nqueued\n$ ls\n", 1)
    found = commands(block)
    assert [c.text for c in found] == ["wf trigger shop --params '{}'", "ls"]
    assert found[0].expected == ["queued"]


def test_a_server_command_may_set_variables_first() -> None:
    assert is_server("wf serve --state s") == "serve"
    assert is_server("NODE=a LOG_DIR=$PWD wf serve --lease 3") == "serve"
    assert is_server("WF_DEV_RELOAD_GRACE=1 wf dev") == "dev"
    assert is_server("NODE=a wf trigger order") is None
    assert is_server("echo wf serve") is None
    assert exec_form("wf serve --port 1") == "exec wf serve --port 1"
    assert exec_form("NODE=a LOG_DIR=$PWD wf serve") == "NODE=a LOG_DIR=$PWD exec wf serve"


def test_variables_set_before_a_server_reach_it(tmp_path: Path) -> None:
    page = """# Page

```toml title="wf.toml"
name = "env"
main = "workflows.py"

[[workflows]]
name = "show"
binding = "SHOW"
class_name = "Show"
```

```python title="workflows.py"
import os

from wf import WorkflowEntrypoint

print("NODE is", os.environ.get("NODE"), flush=True)


class Show(WorkflowEntrypoint):
    async def run(self, event, step):
        return None
```

```console
$ NODE=a wf dev
...
```

<!-- docs: wait-for NODE is a -->
"""
    assert run(tmp_path, page) == 1


def test_an_output_block_belongs_to_the_script_before_it(tmp_path: Path) -> None:
    page = '```console\n$ echo hi\n```\n\n```text title="Output"\nhi\n```\n'
    with pytest.raises(PageError, match="must follow the python script"):
        read_page(write(tmp_path, page))


SERVER_PAGE = """# Page

```toml title="wf.toml"
name = "logs"
main = "workflows.py"

[[workflows]]
name = "hello"
binding = "HELLO"
class_name = "Hello"
```

```python title="workflows.py"
from wf import WorkflowEntrypoint


class Hello(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("say", lambda: "hi")
```

```console
$ wf dev
...
```

```console
$ wf trigger hello --id h1
...
```

<!-- docs: wait-for completed -->

```text
SHOWN
```
"""


def test_a_log_shown_after_a_wait_is_what_the_server_printed(tmp_path: Path) -> None:
    truth = SERVER_PAGE.replace("SHOWN", 'HH:MM:SS hello/h1 ✓ step "say-1" done in N ms')
    assert run(tmp_path / "a", truth) == 3
    lie = SERVER_PAGE.replace("SHOWN", 'HH:MM:SS hello/h1 ✓ step "shout-1" done in N ms')
    with pytest.raises(ExampleFailed, match="does not show what the page does"):
        run(tmp_path / "b", lie)


def test_waiting_twice_for_one_line_waits_for_a_second_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "WAIT_SECONDS", 3.0)
    page = SERVER_PAGE.replace("```text\nSHOWN\n```\n", "<!-- docs: wait-for completed -->\n")
    with pytest.raises(ExampleFailed, match="never printed 'completed'"):
        run(tmp_path, page)
