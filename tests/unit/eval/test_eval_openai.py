"""OpenAIModel against a tiny http.server fake on 127.0.0.1: chat, completions, echo logprobs, retries,
unreachable endpoint, and the API key never leaking into repr / errors / logs."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from instructkit.lm.api import GenerateRequest, LoglikelihoodRequest
from instructkit.lm.openai_backend import EndpointError, OpenAIModel

SECRET = "sk-test-SECRET-123456"


class Fake(BaseHTTPRequestHandler):
    calls: list = []
    fail_first = 0
    echo = True

    def log_message(self, *a):  # keep test output quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Fake.calls.append((self.path, body, self.headers.get("Authorization")))
        if Fake.fail_first > 0:
            Fake.fail_first -= 1
            return self._send(503, {"error": "busy"})
        if self.path == "/v1/chat/completions":
            out = {"choices": [{"message": {"content": f"hello {i} STOP tail"}} for i in range(body["n"])],
                   "usage": {"completion_tokens": 4 * body["n"]}}
        elif body.get("echo"):
            if not Fake.echo:
                out = {"choices": [{"text": ""}]}
            else:
                # prompt "Q: x A" + " yes": tokens split at the context boundary (offset 6)
                out = {"choices": [{"text": body["prompt"], "logprobs": {
                    "tokens": ["Q:", " x", " A", " yes"], "token_logprobs": [None, -1.0, -0.5, -0.25],
                    "text_offset": [0, 2, 4, 6], "top_logprobs": [None, {" x": -1.0}, {" A": -0.5}, {" no": -0.1}]}}]}
        else:
            out = {"choices": [{"text": "42\n\nQuestion: more"}], "usage": {"completion_tokens": 5}}
        self._send(200, out)

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def server():
    Fake.calls, Fake.fail_first, Fake.echo = [], 0, True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    srv.timeout = 5
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def key(monkeypatch):
    monkeypatch.setenv("IK_TEST_KEY", SECRET)


def test_generate_chat_and_completions(server, key):
    m = OpenAIModel(server, "m1", api_key_env="IK_TEST_KEY", backoff=0.01)
    chat, comp = m.generate([GenerateRequest(messages=[{"role": "user", "content": "hi"}], n=2, stop=[" STOP"]),
                             GenerateRequest(prompt="Question: 6*7?\nAnswer:", stop=["\n\nQuestion:"])])
    assert chat.texts == ["hello 0", "hello 1"] and chat.n_tokens == [4, 4]
    assert comp.texts == ["42"]
    paths = sorted(c[0] for c in Fake.calls)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    assert all(c[2] == f"Bearer {SECRET}" for c in Fake.calls)


def test_loglikelihood_echo(server, key):
    m = OpenAIModel(server + "/v1", "m1", api_key_env="IK_TEST_KEY")
    (r,) = m.loglikelihood([LoglikelihoodRequest("Q: x A", " yes")])
    assert r.logprob == -0.25 and r.n_tokens == 1 and r.is_greedy is False
    assert Fake.calls[0][1]["echo"] is True and Fake.calls[0][1]["max_tokens"] == 0
    Fake.echo = False
    with pytest.raises(EndpointError, match="cannot score log-likelihoods"):
        m.loglikelihood([LoglikelihoodRequest("Q: x A", " yes")])


def test_retries_with_backoff(server, key):
    Fake.fail_first = 2
    m = OpenAIModel(server, "m1", api_key_env="IK_TEST_KEY", max_retries=3, backoff=0.01)
    assert m.generate([GenerateRequest(prompt="p", stop=["\n\n"])])[0].texts == ["42"]
    assert len(Fake.calls) == 3
    Fake.fail_first = 10
    with pytest.raises(EndpointError, match="HTTP 503") as e:
        OpenAIModel(server, "m1", api_key_env="IK_TEST_KEY", max_retries=1, backoff=0.01).generate(
            [GenerateRequest(prompt="p")])
    assert SECRET not in str(e.value)


def test_unreachable_endpoint_names_url_and_never_leaks_key(key, caplog):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}"
    m = OpenAIModel(url, "m1", api_key_env="IK_TEST_KEY", max_retries=1, backoff=0.01, timeout=2)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EndpointError) as e:
        m.generate([GenerateRequest(prompt="p")])
    msg = str(e.value)
    assert f"127.0.0.1:{port}/v1/completions" in msg and "cannot reach" in msg
    assert SECRET not in msg and SECRET not in repr(m) and SECRET not in str(m)
    assert SECRET not in caplog.text
    assert SECRET not in repr(e.value.__cause__ or "") and SECRET not in repr(e.value.args)
