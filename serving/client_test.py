"""Tests of the client's output formatting and input discovery (the gRPC path is in server_test)."""
import socket

import numpy as np
import pytest

from realm_tf.testing import cli as launch_testing
from serving import client
from serving.validation import ServingError


def qa_outputs():
  return {
      "answers": np.array([[b"Jane Austen", b"Austen"], [b"Paris", b"Lyon"]], dtype=object),
      "probabilities": np.array([[0.8123, 0.1], [0.5, 0.2]], np.float32),
      "evidence_block_ids": np.array([[11, 12], [21, 22]], np.int64),
      "evidence_titles": np.array([[b"Pride and Prejudice", b"Emma"], [b"Paris", b"France"]],
                                  dtype=object),
      "evidence_texts": np.array([[b"Pride and   Prejudice is an 1813 novel " * 10, b"Emma."],
                                  [b"Paris is the capital.", b"France is a country."]],
                                 dtype=object),
      "evidence_scores": np.array([[12.5, 11.0], [9.25, 3.0]], np.float32),
  }


def test_format_answers_top_answer_probability_and_evidence():
  text = client.format_answers(["who wrote pride and prejudice", "capital of france"],
                               qa_outputs(), max_evidence=1, snippet_chars=40)
  lines = text.splitlines()
  assert lines[:6] == [
      "Q: who wrote pride and prejudice",
      "A: Jane Austen  (p=0.812)",
      "   evidence:",
      "     [1] score=12.500 block=11 Pride and Prejudice",
      "         Pride and Prejudice is an 1813 novel...",
      "Q: capital of france",
  ]
  assert lines[6] == "A: Paris  (p=0.500)" and "score=9.250 block=21 Paris" in lines[8]
  assert len(lines) == 10


def test_format_answers_rank1_answers_without_evidence():
  text = client.format_answers(["q"], {"answer": np.array([b"x"], dtype=object)})
  assert text == "Q: q\nA: x"


def test_other_models_print_every_output():
  text = client.format_answers(["q"], {"embeddings": np.ones((1, 2), np.float32),
                                       "names": np.array([b"a"], dtype=object)})
  assert text.splitlines() == ["embeddings (float32, shape [1, 2]):", "[[1. 1.]]",
                               "names (object, shape [1]):", "['a']"]


def test_find_string_input():
  meta = {"serving_default": {"inputs": {"questions": ("string", [-1])}, "outputs": {}},
          "two": {"inputs": {"a": ("string", [-1]), "b": ("int32", [-1])}, "outputs": {}}}
  assert client.find_string_input(meta, "serving_default") == "questions"
  with pytest.raises(ValueError, match="--input_name"):
    client.find_string_input(meta, "two")
  with pytest.raises(ValueError, match="not in the model's signatures"):
    client.find_string_input(meta, "nope")


def test_build_request_encodes_unicode_strings():
  c = client.PredictClient("localhost:1", "m", version_label="stable")
  request = c.build_request({"q": np.array(["café"])}, output_filter=["a"])
  c.close()
  assert request.inputs["q"].string_val == ["café".encode()]
  assert request.model_spec.version_label == "stable" and request.output_filter == ["a"]


def test_format_answers_rows_with_a_status():
  outputs = qa_outputs()
  outputs["status"] = np.array([b"ok", b"empty_question"], dtype=object)
  text = client.format_answers(["who wrote pride and prejudice", ""], outputs, max_evidence=1,
                               snippet_chars=40)
  lines = text.splitlines()
  assert lines[1] == "A: Jane Austen  (p=0.812)" and "block=11" in lines[3]
  assert lines[-2:] == ["Q: ", "A: (no answer: empty_question)"]


def _unused_port() -> int:
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_answer_takes_plain_values_and_names_the_server_of_a_failed_rpc():
  server = f"localhost:{_unused_port()}"
  with pytest.raises(ServingError, match=f"^{server}: UNAVAILABLE: "):
    client.answer(client.ClientConfig(server=server, timeout=10), ["who?"])


def test_cli_unreachable_server_is_a_one_line_error():
  with socket.socket() as s:  # a port nothing listens on
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  proc = launch_testing.run_cli("serving.client", f"--server=localhost:{port}", "--timeout=10",
                                "who wrote pride and prejudice")
  launch_testing.assert_one_line_error(proc, f"localhost:{port}: UNAVAILABLE")
