"""README and CI stay true: CI runs the README's test command; the README's Python snippet runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = [b.strip() for b in _bash_blocks(readme)]
    test_commands = [b for b in blocks if "pytest" in b]
    assert len(test_commands) == 1, "README must hold exactly one test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_commands[0] in ci.splitlines(), "CI must run exactly the README's test command"
    main_commands = [b for b in blocks if "validation.exact" in b]
    assert len(main_commands) == 1 and "torch==2.13.0" in main_commands[0]


def test_readme_python_snippet_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert snippets, "README must hold a Python usage snippet"
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.strip(), "the snippet prints its result"
