"""Contract check: a real agent CLI, in its built image, against a fake model.

Not part of the test suite (it needs ``haflow-agent-<adapter>:<version>``,
built with ``python -m haflowd.sandbox.docker.agent_images <adapter>``). It starts a tiny
aiohttp server on loopback that speaks the Anthropic Messages API and the
OpenAI Chat Completions API in their streaming forms, runs the adapter's
exact command line and prompt in the image (``--network host`` so the
container's loopback is this host's; ``base_url`` points the CLI there), and
feeds the real output to our parser.

The scripted model writes the step's output file (Claude Code also
``/workspace/hello.txt``), then says it is done. The check passes when the
parser's Outcome is a success with token counts and the output file exists.

    python bench/agent_contract.py [--adapter claude-code|aider|opencode] [--image IMAGE]
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

from haflowd.agents.protocol import StepContext
from haflowd.agents.registry import adapter_for
from haflowd.models import AdapterId, AgentSpec
from haflowd.sandbox.docker.agent_images import load_recipes

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

    def chat_reply(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """Text and tool calls of the next Chat Completions answer."""
        messages = body.get("messages", [])
        if body.get("tools"):
            # A tool-calling agent (opencode): write the file, then finish.
            if not any(m.get("role") == "tool" for m in messages):
                args = {"filePath": self.output_path, "content": "# Brief\n\nDark mode toggle.\n"}
                call = {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "write", "arguments": json.dumps(args)},
                }
                return "I'll write the brief.", [call]
            return "Wrote the brief.", []
        # aider's "whole" edit format: the file's name, then its whole new content.
        name = self.output_path.rsplit("/", 1)[-1]
        return f"I'll write the brief.\n\n{name}\n```\n# Brief\n\nDark mode toggle.\n```\n", []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        text, calls = self.chat_reply(body)
        usage = {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        }
        finish = "tool_calls" if calls else "stop"
        base = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", "fake-model"),
        }
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                message["tool_calls"] = calls
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> None:
            data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}
            await resp.write(f"data: {json.dumps(data)}\n\n".encode())

        await chunk({"role": "assistant", "content": ""})
        await chunk({"content": text})
        for index, call in enumerate(calls):
            await chunk({"tool_calls": [{"index": index, **call}]})
        await chunk({}, finish)
        await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """generateContent / streamGenerateContent: write_file, then a final text."""
        body = await request.json()
        self.requests.append(body)
        answered = any("functionResponse" in part for c in body.get("contents", []) for part in c.get("parts", []))
        if not body.get("tools"):
            # Side calls (next-speaker checks and the like) want JSON.
            parts: list[dict[str, Any]] = [{"text": json.dumps({"reasoning": "done", "next_speaker": "user"})}]
        elif not answered:
            call = {"name": "write_file", "args": {"file_path": self.output_path, "content": "# Brief\n"}}
            parts = [{"text": "I'll write the brief."}, {"functionCall": call}]
        else:
            parts = [{"text": "Wrote the brief."}]
        data = {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {
                "promptTokenCount": INPUT_TOKENS,
                "candidatesTokenCount": OUTPUT_TOKENS,
                "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS,
            },
            "modelVersion": "gemini-2.5-flash",
        }
        if "streamGenerateContent" not in request.path:
            return web.json_response(data)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(f"data: {json.dumps(data)}\r\n\r\n".encode())
        await resp.write_eof()
        return resp

    def codex_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A shell call writing the output file, in whichever shell tool the request offers."""
        script = f"printf '# Brief\\n' > {self.output_path}"
        tools = {t.get("name"): t for t in body.get("tools", []) if isinstance(t, dict)}
        if "shell_command" in tools:
            args: dict[str, Any] = {"command": script}
            name = "shell_command"
        elif "exec_command" in tools:
            args, name = {"cmd": script}, "exec_command"
        elif "shell" in tools:
            args, name = {"command": ["bash", "-lc", script]}, "shell"
        else:
            return None
        return {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": name, "arguments": json.dumps(args)}

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API (codex): a shell call, then a final message."""
        body = await request.json()
        self.requests.append({"tools": [t.get("name") for t in body.get("tools", []) if isinstance(t, dict)]})
        answered = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in body.get("input", []))
        call = None if answered else self.codex_call(body)
        text = "Wrote the brief." if answered or call is None else "I'll write the brief."
        items: list[dict[str, Any]] = [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
        if call is not None:
            items.append(call)
        usage = {
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": OUTPUT_TOKENS,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        }
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        rid = f"resp_{len(self.requests)}"
        await resp.write(sse("response.created", {"type": "response.created", "response": {"id": rid}}))
        for index, item in enumerate(items):
            done = {"type": "response.output_item.done", "output_index": index, "item": item}
            await resp.write(sse("response.output_item.done", done))
        completed = {"type": "response.completed", "response": {"id": rid, "usage": usage}}
        await resp.write(sse("response.completed", completed))
        await resp.write_eof()
        return resp

    async def other(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": INPUT_TOKENS})
        if request.path.endswith(":countTokens"):
            return web.json_response({"totalTokens": INPUT_TOKENS})
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "no"}}, status=404)


MODELS = {
    "claude-code": None,
    "aider": "openai/fake-model",
    "opencode": "fake-model",
    "gemini": "gemini-2.5-flash",
    "codex": "gpt-5.1-codex",
}
#: What base_url is for each CLI: Anthropic and Gemini add their own API paths.
BASE_PATHS = {"claude-code": "", "gemini": "", "aider": "/v1", "opencode": "/v1", "codex": "/v1"}


async def check(
    adapter_id: str, image: str, port: int, save: Path | None = None, docker_args: tuple[str, ...] = ()
) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="haflow-contract-"))
    artifacts, workspace = tmp / "artifacts", tmp / "workspace"
    for folder in (artifacts, workspace):
        folder.mkdir()
        folder.chmod(0o777)
    (artifacts / "raw-input.md").write_text("Add a dark mode toggle.\n")
    fake = FakeAnthropic("/mission/artifacts/structured-text.md")
    app = web.Application()
    app.router.add_post("/v1/messages", fake.messages)
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1beta/models/{call}", fake.gemini)
    app.router.add_post("/v1/responses", fake.responses)
    app.router.add_route("*", "/{tail:.*}", fake.other)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base_url = f"http://127.0.0.1:{port}{BASE_PATHS[adapter_id]}"
    spec = AgentSpec(
        agent_id=adapter_id, adapter=AdapterId(adapter_id), base_url=base_url, image=image, model=MODELS[adapter_id]
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
    adapter = adapter_for(spec)
    inv = adapter.invocation(ctx)
    argv = ["docker", "run", "--rm", "-i", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    argv += ["--tmpfs", "/home/agent:uid=1000,gid=1000", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    argv += ["-v", f"{artifacts}:/mission/artifacts", "-v", f"{workspace}:/workspace", "-w", "/workspace"]
    argv += ["--tmpfs", "/home/agent/.cache:uid=1000,gid=1000", "--memory", "2g"]
    for key, value in {**inv.env, **{name: "sk-fake" for name in inv.secrets}}.items():
        argv += ["-e", f"{key}={value}"]
    argv += [*docker_args, image, *inv.command]
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
    if save is not None:
        save.write_text(raw.read_text())
    print(f"model requests: {len(fake.requests)}")
    print("outcome:", outcome)
    hello = workspace / "hello.txt"
    output = artifacts / "structured-text.md"
    ok = (
        outcome.success
        and outcome.usage is not None
        and outcome.usage.output_tokens > 0
        and (hello.exists() or adapter_id != "claude-code")
        and output.exists()
    )
    print("hello.txt:", hello.exists(), "| output artifact:", output.exists())
    print("CONTRACT", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--adapter", choices=sorted(MODELS), default="claude-code")
    parser.add_argument("--image", help="default: the pinned haflow-agent-<adapter> image")
    parser.add_argument("--port", type=int, default=18089)
    parser.add_argument("--save", type=Path, help="keep the CLI's raw output (e.g. as a test recording)")
    parser.add_argument(
        "--docker-arg", action="append", default=[], help="extra `docker run` option, e.g. --add-host=HOST:127.0.0.1"
    )
    args = parser.parse_args()
    image = args.image or load_recipes()[args.adapter].tag
    return asyncio.run(check(args.adapter, image, args.port, args.save, tuple(args.docker_arg)))


if __name__ == "__main__":
    sys.exit(main())
