"""docs/http.md's TypeScript example runs against a real ``huddle serve`` (with node, when it is on PATH)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from api_support import TOKENS, ApiServer

from huddle import EmbeddedRedis

DOC = Path(__file__).resolve().parents[1] / "docs" / "http.md"
TYPES = r"(?:string|number|boolean|unknown|any|HuddleEvent\[\]|Record<string, string>)"


def typescript_example() -> str:
    blocks = re.findall(r"```typescript\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def strip_types(source: str) -> str:
    """The example as JavaScript: Node 20 cannot run TypeScript, and no compiler is installed here."""
    source = re.sub(r"(?ms)^interface \w+ \{.*?^\}\n", "", source)
    source = re.sub(r"\): Promise<[^>]*>(?= \{)", ")", source)
    source = re.sub(rf"\b(\w+)\??: {TYPES}", r"\1", source)
    source = re.sub(r" as HuddleEvent\b", "", source)
    return re.sub(r"(\w)!\.", r"\1.", source)


def test_the_typescript_example_is_plain_javascript_once_its_types_are_stripped() -> None:
    stripped = strip_types(typescript_example())
    assert "interface" not in stripped and ": string" not in stripped and "Promise<" not in stripped


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
def test_the_typescript_example_runs_with_node(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    script = tmp_path / "example.mjs"
    script.write_text(strip_types(typescript_example()))
    server = ApiServer(redis_server.url)
    try:
        env = {**os.environ, "HUDDLE_URL": server.base, "HUDDLE_TOKEN": TOKENS["alice"]}
        result = subprocess.run(
            ["node", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["seq"] == 2 and output["seqs"] == [3, 4]
    assert output["streamed"] == [1, 2, 3, 4, 5]  # start, modified, the batch, complete: once each, in order


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not on PATH")
def test_the_readme_curl_example_runs(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    section = README.read_text().split("## HTTP API", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if not line.startswith("huddle serve")]
    script = tmp_path / "example.sh"
    script.write_text("set -e\n" + "\n".join(lines) + "\n")
    server = ApiServer(redis_server.url, tokens=False)  # as in the README: no tokens, loopback
    try:
        env = {**os.environ, "HUDDLE_URL": server.base}
        result = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        assert server.stop() == 0
    assert result.returncode == 0, result.stderr
    assert '"session_id":"readme"' in result.stdout and '{"seq":2}' in result.stdout
    assert "event: start" in result.stdout and result.stdout.rstrip().splitlines()[-1].startswith("data: ")
    assert "event: completed" in result.stdout
