"""Contract check: the real Claude Code binary, in its built image, against a fake model.

Not part of the test suite (it needs ``haflow-agent-claude-code:<version>``,
built with ``python -m haflowd.agent_images claude-code``). It starts a tiny
aiohttp server on loopback that speaks the Anthropic Messages API in its
streaming form, runs the adapter's exact command line and prompt in the
image (``--network host`` so the container's loopback is this host's), and
feeds the real output to our parser.

The scripted model writes ``/workspace/hello.txt`` and the step's output
file with the Write tool, then says it is done. The check passes when the
parser's Outcome is a success with the fake server's token counts and both
files exist.

    python bench/agent_contract.py [--image haflow-agent-claude-code:2.1.331]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from haflowd.agent_images import load_recipes
from haflowd.agents.claude_code import ClaudeCodeAdapter
from haflowd.agents.protocol import StepContext
from haflowd.models import AdapterId, AgentSpec

INPUT_TOKENS = 1500
OUTPUT_TOKENS = 42


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FakeAnthropic:
    """Answers /v1/messages: tool calls first, then a final text."""

    def __init__(self, output_path: str) -> None:
        self.output_path = output_path
        self.requests: list[dict[str, Any]] = []

    def blocks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        tool_results = sum(
            1
            for m in body.get("messages", [])
            if m.get("role") == "user" and isinstance(m.get("content"), list)
            for part in m["content"]
            if isinstance(part, dict) and part.get("type") == "tool_result"
        )
        if not body.get("tools"):
            return [{"type": "text", "text": "ok"}]
        if tool_results == 0:
            return [
                {"type": "text", "text": "I'll create the files."},
                {
                    "type": "tool_use",
                    "id": "toolu_01HELLO",
                    "name": "Write",
                    "input": {"file_path": "/workspace/hello.txt", "content": "hello from claude\n"},
                },
            ]
        if tool_results == 1:
            return [
                {
                    "type": "tool_use",
                    "id": "toolu_02OUTPUT",
                    "name": "Write",
                    "input": {"file_path": self.output_path, "content": "# Brief\n\nDark mode toggle.\n"},
                }
            ]
        return [{"type": "text", "text": "Created hello.txt and the brief."}]

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        blocks = self.blocks(body)
        model = body.get("model", "claude-sonnet-4-5")
        usage = {"input_tokens": INPUT_TOKENS, "output_tokens": 1, "cache_read_input_tokens": 0}
        message = {
            "id": f"msg_fake_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        if not body.get("stream"):
            done = {**message, "content": blocks, "stop_reason": stop}
            done["usage"] = {**usage, "output_tokens": OUTPUT_TOKENS}
            return web.json_response(done)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(sse("message_start", {"type": "message_start", "message": message}))
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            await resp.write(
                sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            )
            await resp.write(
                sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
            await resp.write(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        await resp.write(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": OUTPUT_TOKENS},
                },
            )
        )
        await resp.write(sse("message_stop", {"type": "message_stop"}))
        await resp.write_eof()
        return resp

    async def other(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": INPUT_TOKENS})
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no"}}, status=404)


async def check(image: str, port: int) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="haflow-contract-"))
    artifacts, workspace = tmp / "artifacts", tmp / "workspace"
    for folder in (artifacts, workspace):
        folder.mkdir()
        folder.chmod(0o777)
    (artifacts / "raw-input.md").write_text("Add a dark mode toggle.\n")
    fake = FakeAnthropic("/mission/artifacts/structured-text.md")
    app = web.Application()
    app.router.add_post("/v1/messages", fake.messages)
    app.router.add_route("*", "/{tail:.*}", fake.other)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    spec = AgentSpec(
        agent_id="claude-code", adapter=AdapterId.CLAUDE_CODE, base_url=f"http://127.0.0.1:{port}", image=image
    )
    ctx = StepContext(
        mission_id="m-contract",
        mission_title="Dark mode",
        mission_type="feature",
        run_id="r-1",
        step_id="cleanup",
        step_name="Cleanup",
        agent=spec,
        prompt="cleanup",
        input_artifact="raw-input.md",
        output_artifact="structured-text.md",
        input_text="Add a dark mode toggle.",
    )
    adapter = ClaudeCodeAdapter()
    inv = adapter.invocation(ctx)
    argv = ["docker", "run", "--rm", "-i", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    argv += ["--tmpfs", "/home/agent:uid=1000,gid=1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    argv += ["-v", f"{artifacts}:/mission/artifacts", "-v", f"{workspace}:/workspace", "-w", "/workspace"]
    for key, value in {**inv.env, **{name: "sk-fake" for name in inv.secrets}}.items():
        argv += ["-e", f"{key}={value}"]
    argv += [image, *inv.command]
    print("$", " ".join(argv[:3]), "...", " ".join(inv.command), flush=True)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((inv.stdin or "").encode())
    proc.stdin.close()
    parser = adapter.parser()
    raw = tmp / "events.jsonl"
    with raw.open("w") as keep:
        async for line in proc.stdout:
            text = line.decode(errors="replace").rstrip("\n")
            keep.write(text + "\n")
            for readable in parser.feed(text):
                print("  " + readable, flush=True)
    code = await asyncio.wait_for(proc.wait(), 120)
    await runner.cleanup()
    outcome = parser.finish(code)
    print(f"exit {code} after {time.monotonic() - started:.1f} s; raw events in {raw}")
    print(f"model requests: {len(fake.requests)}")
    print("outcome:", outcome)
    hello = workspace / "hello.txt"
    output = artifacts / "structured-text.md"
    ok = (
        outcome.success
        and outcome.usage is not None
        and outcome.usage.output_tokens > 0
        and hello.exists()
        and output.exists()
    )
    print("hello.txt:", hello.exists(), "| output artifact:", output.exists())
    print("CONTRACT", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    default = load_recipes()["claude-code"].tag
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--image", default=default)
    parser.add_argument("--port", type=int, default=18089)
    args = parser.parse_args()
    return asyncio.run(check(args.image, args.port))


if __name__ == "__main__":
    sys.exit(main())
