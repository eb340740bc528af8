"""The ``synth:`` config sections (teacher + one section per method). Owned by the synth stage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section

BLACKLIST = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
             "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]


FASTCHAT_BLOCKED_RESPONSES = ["Too many requests in 1 hour. Try again later.",
                              "!Too many requests in 1 hour. Try again later."]


class TeacherConfig(Section):
    model: str = Field("smollm2-135m-instruct", description="Teacher: model alias/folder/hub id (local, batched), "
                       "http(s) URL of an OpenAI-compatible server, or py:module:factory (your own backend).")
    endpoint_model: str = Field("default", description="Model name sent to an OpenAI-compatible server.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    concurrency: int = Field(8, ge=1, description="Endpoint requests in flight.")
    rpm: float = Field(0, ge=0, description="Endpoint requests per minute (0 = unlimited).")
    tpm: float = Field(0, ge=0, description="Endpoint tokens per minute, prompt + completion estimate (0 = unlimited).")
    timeout: float = Field(120.0, gt=0, description="Seconds per endpoint request before it is retried.")
    max_retries: int = Field(6, ge=0, description="Retries on 429/5xx/timeouts: exponential backoff 1, 2, 4, .. s "
                             "(at most 60 s), never shorter than the server's Retry-After.")
    batch_size: int = Field(8, ge=1, description="Prompts per generate call for a local model.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Local teacher dtype.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(512, ge=1, description="Tokens per teacher answer.")
    price_in: float = Field(0.0, ge=0, description="Cost per million prompt tokens (for the cost estimate; 0 = none).")
    price_out: float = Field(0.0, ge=0, description="Cost per million completion tokens.")
    progress: bool = Field(True, description="Show a progress bar (ETA, requests/s, tokens/s).")


class SelfInstructConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model and how to call it.")
    seeds: str = Field("../shared/data/self_instruct/seed_tasks.jsonl",
                       description="Seed tasks: self-instruct JSONL ({instruction, instances}) or Alpaca JSON/JSONL.")
    style: Literal["alpaca", "paper"] = Field("alpaca", description="alpaca: 3 seeds, 20 tasks/request with input+output; "
                                              "paper: 6 human + 2 machine instructions (shuffled), then classification detection and "
                                              "output-first (classification) / input-first instances.")
    num_instructions: int = Field(100, ge=1, description="Stop once this many instructions are kept.")
    requests_per_round: int = Field(8, ge=1, description="Prompts sent per round (the pool grows between rounds).")
    max_rounds: int = Field(50, ge=1, description="Give up after this many rounds (e.g. when the teacher repeats itself).")
    num_prompt_seeds: Optional[int] = Field(None, description="Seed tasks per prompt (default 3 alpaca, 6 paper).")
    num_prompt_machine: int = Field(2, ge=0, description="paper style: machine tasks per prompt once there are some.")
    instances_per_task: int = Field(1, ge=1, description="paper style: instances kept per instruction (each one "
                                    "training item; the paper keeps up to 5).")
    tasks_per_request: int = Field(20, ge=1, description="Tasks the prompt asks for (numbered list).")
    rouge_threshold: float = Field(0.7, gt=0, le=1, description="Drop an instruction whose ROUGE-L F vs a kept one is >= this.")
    min_words: int = Field(4, ge=0, description="Drop instructions with fewer words than this (Alpaca drops <= 3).")
    max_words: int = Field(150, ge=1, description="Drop instructions longer than this (words).")
    blacklist: list[str] = Field(default_factory=lambda: list(BLACKLIST), description="Drop instructions with these words.")
    contamination: list[str] = Field(default_factory=list, description="Eval sets (JSONL files or task ids) for the 13-gram check.")
    seed: int = Field(0, description="Seed for prompt sampling and teacher sampling.")


class EvolConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model and how to call it.")
    instructions: Optional[str] = Field(None, description="Seed instructions: Alpaca JSON/JSONL, self-instruct JSONL, messages JSONL, or text (one per line).")
    rounds: int = Field(4, ge=1, description="Evolution rounds M.")
    limit: Optional[int] = Field(None, ge=1, description="Use only the first N seed instructions.")
    ops: list[str] = Field(default_factory=lambda: ["constraints", "deepen", "concretize", "reasoning", "complicate_input",
                                                    "breadth"], description="Operations sampled uniformly per evolution.")
    judge_equal: bool = Field(True, description="Rule 1: ask the teacher whether the evolved prompt equals its parent.")
    respond: bool = Field(True, description="Generate the response to each evolved instruction (rules 2-3 need it).")
    seed: int = Field(0, description="Seed for operation choice and sampling.")


class MagpieConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model and how to call it.")
    n: int = Field(50, ge=1, description="Instructions to sample.")
    tokenizer: Optional[str] = Field(None, description="Tokenizer whose chat template gives the pre-query (default: the teacher).")
    system: Optional[str] = Field(None, description="System prompt rendered before the pre-query.")
    respond: bool = Field(True, description="Also generate responses (chat template) for the instructions.")
    min_words: int = Field(3, ge=0, description="Drop instructions shorter than this (words).")
    seed: int = Field(0, description="Sampling seed.")


class MultiTurnConfig(Section):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher model and how to call it.")
    instructions: Optional[str] = Field(None, description="Single-turn data: Alpaca JSON/JSONL, messages/ShareGPT JSONL, or text.")
    turns: int = Field(3, ge=1, description="Turns (user question + assistant answer) per conversation, the first included.")
    limit: Optional[int] = Field(None, ge=1, description="Use only the first N instructions.")
    seed: int = Field(0, description="Sampling seed.")


class CleanConfig(Section):
    input: Optional[str] = Field(None, description="ShareGPT JSON (a list, possibly truncated) or JSONL.")
    tokenizer: str = Field("smollm2-135m-instruct", description="Tokenizer + chat template used to measure lengths.")
    max_tokens: int = Field(2048, ge=16, description="Split conversations longer than this (template tokens).")
    languages: list[str] = Field(default_factory=list, description="Keep only these languages (langdetect codes); empty = all.")
    near_dup_threshold: float = Field(0.9, gt=0, le=1, description="MinHash Jaccard above which a conversation is a near duplicate.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    limit: Optional[int] = Field(None, ge=1, description="Read only the first N conversations.")
    html_roles: list[Literal["user", "assistant", "system"]] = Field(
        default_factory=lambda: ["assistant"], description="Roles whose messages may be scraped HTML (converted to "
        "markdown only when the message is an HTML document, never code inside markdown). ShareGPT's scrape "
        "stored the assistant's rendered answer as HTML; HTML in a user message is code the user pasted.")
    blocked_words: list[str] = Field(default_factory=list, description="Drop a conversation whose any message "
                                     "contains one of these (case-insensitive substring); FastChat: [openai, chatgpt].")
    blocked_responses: list[str] = Field(
        default_factory=lambda: list(FASTCHAT_BLOCKED_RESPONSES), description="Drop a conversation with an "
        "assistant message starting with one of these (FastChat's rate-limit answers); [] = off.")
    min_chars: int = Field(0, ge=0, description="Drop conversations with fewer characters in all (FastChat: 16; 0 = off).")
