"""Every DOCQA_* option, declared once with its default and help line.

`Settings()` reads the environment; tests build `Settings(data_dir=tmp_path, ...)` directly.
Nothing deeper in the code reads `os.environ`: the settings object is passed down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from docqa.access import parse_api_keys, parse_rate
from docqa.hosts import parse_hosts


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "docqa"


def default_models_dir() -> Path:
    return Path.home() / ".cache" / "docqa" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCQA_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where docqa keeps its SQLite database, uploaded files and KV-state snapshots.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database; default: sqlite:///<data_dir>/docqa.sqlite3. PostgreSQL: "
        "postgresql+psycopg://user:password@host:5432/db (several instances may share it and one data folder)."
    )
    models_dir: Path = Field(
        default_factory=default_models_dir,
        description="Where the embedded default model is cached after `docqa fetch-model`, and where `docqa pull` "
        "puts the models it downloads (under hf/<org>/<repo>/).",
    )
    discover_models: bool = Field(
        True,
        description="Offer the GGUF models already on disk in Ollama's store, LM Studio's models folders, the "
        "Hugging Face cache and llama.cpp's cache (found where OLLAMA_MODELS, HF_HOME / HF_HUB_CACHE and LLAMA_CACHE "
        "say, read in place: never copied or changed); false offers only the configured and pulled ones.",
    )
    model_dirs: str | None = Field(
        None,
        description="More folders searched for *.gguf models, comma-separated (read in place, split GGUFs as one "
        "model); each is offered under its file name.",
    )
    model_managers: str | None = Field(
        None,
        description="With DOCQA_API_KEYS: the principals (comma-separated NAMEs) who may pull models through the API "
        "(POST /api/models/pull); in loopback mode anyone on the machine may.",
    )
    model: str | None = Field(
        None,
        description="Path to the GGUF model to answer with; default: the embedded SmolLM2-135M-Instruct.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address `docqa serve` binds to; without DOCQA_API_KEYS only a loopback address is allowed.",
    )
    port: int = Field(8000, description="Port `docqa serve` listens on.")
    max_upload_bytes: int = Field(50 * 1024 * 1024, description="Largest upload accepted, in bytes (413 past it).")
    max_pdf_pages: int = Field(2000, description="Most pages read from one PDF (422 past it).")
    max_archive_entries: int = Field(5000, description="Most entries allowed in an uploaded zip (422 past it).")
    max_archive_bytes: int = Field(
        200 * 1024 * 1024, description="Largest total uncompressed size of an uploaded zip, in bytes."
    )
    max_archive_ratio: int = Field(
        100, description="Largest compression ratio allowed for one zip member (archive-bomb guard)."
    )
    max_archive_file_bytes: int = Field(
        2 * 1024 * 1024, description="Zip members larger than this (uncompressed) are skipped, not read."
    )
    parse_timeout_s: float = Field(60.0, description="Wall-clock limit for parsing one upload, in seconds.")
    parse_processes: int = Field(
        4, ge=1, description="Most parse processes running at once, for every principal together; an upload past it "
        "is refused with 503 and Retry-After."
    )
    principal_parses: int = Field(
        2, ge=1, description="Most parse processes one principal may hold at once (its share of "
        "DOCQA_PARSE_PROCESSES); one more upload is refused with 429 and Retry-After."
    )
    parse_memory_bytes: int = Field(
        2 * 1024 * 1024 * 1024, description="Address-space limit of the separate parse process, in bytes."
    )
    section_max_chars: int = Field(
        2000, description="Text and code files are cut into line-range sections of about this many characters."
    )
    ocr: bool = Field(
        True, description="Read PDF pages without a text layer (scans) with Tesseract OCR; false refuses them."
    )
    ocr_langs: str = Field(
        "eng+ara", description="Tesseract languages for OCR, joined by '+'; an upload may override them "
        "(form field ocr_langs)."
    )
    ocr_page_timeout_s: float = Field(
        20.0, gt=0, description="Seconds added to the parse limit for each page read by OCR (also the most one "
        "page's OCR may take)."
    )
    ocr_budget_s: float = Field(
        600.0, gt=0, description="Most seconds OCR may spend on one upload, whatever its page count; a scan whose "
        "pace shows it would take longer is refused as soon as that is clear (after two pages), with the estimate."
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution at which scanned pages are rendered for OCR.")

    models: str | None = Field(
        None,
        description="Extra named models, comma-separated NAME=PATH (a GGUF) or NAME=URL (a llama-server, vLLM or "
        "SGLang server) pairs, e.g. qwen=/models/Qwen3-4B.gguf,big=http://gpu-1:8080,big=http://gpu-2:8080; a name "
        "repeated is one model on several servers. Another OpenAI-compatible server (no /tokenize) needs its "
        "model's GGUF: URL#tokenizer=/path/model.gguf.",
    )
    remote_api_keys: SecretStr | None = Field(
        None,
        description="API keys of remote model servers, comma-separated URL=KEY pairs, or one KEY for every server; "
        "sent as a Bearer token, never logged or shown.",
    )
    remote_timeout_s: float = Field(
        300.0, description="Longest wait for a remote server's next bytes (connect: 5 s), in seconds; past it the "
        "server is taken out of rotation.",
    )
    remote_probe_s: float = Field(
        10.0, description="How often a remote server out of rotation is probed to bring it back, in seconds.",
    )
    memory_budget: int | None = Field(
        None,
        description="Bytes docqa may use for one model context (weights + KV + compute); "
        "default: the smaller of the cgroup limit and MemAvailable.",
    )
    memory_margin: int = Field(256 * 1024 * 1024, description="Safety margin kept free by the planner, in bytes.")
    max_context: int = Field(262_144, description="Largest context (tokens) docqa opens for one document set.")
    max_yarn_factor: float = Field(8.0, description="Largest YaRN stretch factor over a model's trained context.")
    chunk_context: int = Field(
        32_768, description="Context size (tokens) of chunked map-reduce mode; capped by the trained context."
    )
    chunk_overlap: int = Field(128, description="Tokens of overlap between consecutive chunks.")
    answer_tokens: int = Field(512, description="Default answer budget (tokens generated) per question.")
    question_tokens: int = Field(
        512, description="Longest question accepted, in model tokens (422 past it); reserved in every plan."
    )
    history_tokens: int = Field(
        1024, ge=0, description="Room (model tokens) reserved in every plan for a conversation's earlier turns, "
        "after the documents (in chunked mode at most an eighth of a chunk); past it the oldest turns are dropped "
        "(and the answer's notes say so).",
    )
    history_turns: int = Field(
        8, ge=0, description="Most earlier question/answer turns carried into a question (0: no history)."
    )
    search_lines: int = Field(
        3, ge=0, le=20, description="Lines of the documents shown to the model before the question (document sets of "
        "1,024 tokens or more): those a search "
        "finds holding the question's rarer words, and a sentence naming its words no line holds (0: none).",
    )
    unsupported_answers: Literal["withhold", "show"] = Field(
        "withhold", description="An answer none of whose statements the documents support (or that only copies "
        "text unrelated to the question): withhold says the documents do not seem to say, keeping the model's "
        "text as its draft and in the notes; show returns it as it is (its claims marked unsupported either way).",
    )
    n_threads: int | None = Field(
        None, ge=1, description="CPU threads for llama.cpp; default: every physical core (prompt reading: every CPU)."
    )
    mmap: bool = Field(
        True,
        description="Memory-map model weights (llama.cpp's default). false reads them into memory: slower to load, "
        "but a model file overwritten in place while a question runs cannot crash docqa.",
    )
    extra_buffers: str = Field(
        "auto",
        description="llama.cpp's extra buffer types (weights repacked for faster kernels; AMX tiles): auto uses them "
        "except on CPUs with AMX, whose kernels crash in this llama.cpp (and turns them off for a model whose runner "
        "died of a native fault while using them); on or off forces them.",
    )
    model_keep_alive: float = Field(
        300.0,
        description="Seconds a model's runner process stays loaded after its last question (like Ollama's "
        "keep_alive; 30s, 5m, 1h accepted); 0 keeps it loaded until docqa stops.",
    )
    n_batch: int = Field(512, description="Tokens evaluated per llama.cpp batch (and per progress update).")
    flash_attn: bool | None = Field(
        None,
        description="Force llama.cpp flash attention on or off. Unset (auto): off while the attention scores it "
        "would need instead stay under 512 MiB (SmolLM2 up to ~26K tokens), on past that. On this CPU reading is "
        "about as fast either way, but a question and its answer are 1.5-2x faster without it at 4K tokens "
        "(bench/results/flash.json); with it the compute buffer does not grow with the context. Quantized KV "
        "turns it on.",
    )
    kv_types: str = Field(
        "f16,q8_0,q4_0", description="KV-cache types the planner may use, best first (drop q4_0 to protect quality)."
    )
    state_cache_bytes: int = Field(
        4 * 1024**3, description="Disk cap for KV-state snapshots of read documents; least recently used go first."
    )
    snapshot_stop_wait: float = Field(
        60.0, ge=0,
        description="Seconds a stopping docqa (SIGTERM, Ctrl-C, an idle model unloading) waits for the KV snapshots "
        "still being written, so documents just read are not read again after a restart (30s, 2m accepted); what is "
        "not written by then is given up and logged. Keep a service manager's stop timeout above it plus ~25 s "
        "(systemd TimeoutStopSec, docker stop -t).",
    )
    preload: bool = Field(
        True, description="Load the default model (DOCQA_MODEL, else the embedded one) when docqa starts, in its "
        "runner process, as llama-server does, so the first question does not wait for the model to load; "
        "DOCQA_MODEL_KEEP_ALIVE then applies as after a question.",
    )
    read_ahead: bool = Field(
        True, description="Read a document set in the background when a session is opened or documents are chosen "
        "(POST /api/read-ahead), at the lowest priority, so the first answer starts warm.",
    )
    read_ahead_tokens: int = Field(
        65536, ge=0, description="Most prompt tokens read ahead per document set (its first tokens; a question "
        "reads the rest); 0 reads none.",
    )
    read_ahead_sets: int = Field(
        8, ge=1, description="Most document sets read ahead at once, for every principal together (each principal "
        "has at most one: a new set replaces its earlier ones not done); past it a new set is refused (state "
        "`refused`, with the reason).",
    )
    queue_size: int = Field(
        8, ge=0, description="Questions that may wait per model beside the one answered; past it the API answers 503."
    )
    seed: int = Field(-1, description="Sampling seed; -1 picks a random one per question.")
    batch_max_questions: int = Field(200, description="Most questions in one batch (422 past it).")
    batch_max_items: int = Field(
        2000, description="Most answers one batch may ask for (documents × questions with per_document)."
    )
    batch_lease_s: float = Field(
        60.0, description="How long a batch worker holds a question before another worker may take it over; "
        "renewed while it answers."
    )
    batch_max_attempts: int = Field(3, description="Tries per batch question before it is marked failed.")
    batch_workers: int = Field(
        1, ge=1, le=64, description="Batch questions this instance answers at once; a remote model on several servers "
        "answers as many as their slots together (a local model answers one at a time whatever this says).",
    )

    api_keys: SecretStr | None = Field(
        None,
        description="API keys, comma-separated NAME:KEY or NAME:sha256:<hex of the key's sha256> entries; NAME is "
        "the principal owning what the key creates. None: loopback mode (one principal, loopback address only).",
    )
    rate_uploads: str = Field(
        "60/minute", description="Uploads (POST /api/documents) allowed per principal, as N/minute "
        "(or /second, /hour, /day); 0 for no limit (429 past it)."
    )
    rate_questions: str = Field(
        "30/minute", description="Questions and batches (POST …/questions, POST /api/batches) allowed per "
        "principal, as N/minute (or /second, /hour, /day); 0 for no limit (429 past it)."
    )

    allowed_hosts: str | None = Field(
        None,
        description="With DOCQA_API_KEYS: the Host names (comma-separated; *.example.com for subdomains) the "
        "server answers besides loopback ones; unset: any. Without keys only localhost, 127.0.0.0/8 and [::1] "
        "are answered, whatever this says (DNS rebinding).",
    )
    max_set_tokens: int = Field(
        524_288, ge=1,
        description="Largest document set (model tokens) a plan accepts; 422 with the numbers past it. The "
        "default is about 35 minutes of reading for the embedded model on 2 CPU cores.",
    )
    principal_concurrency: int = Field(
        4, ge=1,
        description="Plans, session openings, questions and batch submissions one principal may have in progress "
        "at once (429 with Retry-After past it).",
    )
    planning_threads: int = Field(
        2, ge=1,
        description="Threads per principal that count tokens and plan (plans, new sessions, question and batch "
        "checks); more requests of that principal wait for one; another principal's, and listings and reads, "
        "never wait behind them.",
    )
    client_timeout_s: float = Field(
        10.0, gt=0,
        description="Seconds a client has to send a request's headers, and the grace period before the "
        "minimum upload rate applies (408, then the connection is closed).",
    )
    min_upload_rate: int = Field(
        16_384, ge=0,
        description="Slowest request body accepted after the grace period, in bytes per second on average "
        "(408 and the connection closed below it); 0 for no minimum.",
    )
    max_upload_s: float = Field(
        300.0, gt=0, description="Most seconds one request body may take to arrive, however fast it comes "
        "(408 and the connection closed past it).",
    )
    client_connections: int = Field(
        128, ge=1, description="Most open connections from one client address; one more is answered 429 and "
        "closed at once (behind a reverse proxy every client has the proxy's address: raise it, or cap there).",
    )

    @field_validator("api_keys")
    @classmethod
    def _valid_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        parse_api_keys(value.get_secret_value() if value is not None else None)  # ValueError with a sentence
        return value

    @field_validator("rate_uploads", "rate_questions")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        parse_rate(value)
        return value.strip()

    @field_validator("extra_buffers")
    @classmethod
    def _extra_buffer_choice(cls, value: str) -> str:
        if value.strip().lower() not in ("auto", "on", "off"):
            raise ValueError(f"DOCQA_EXTRA_BUFFERS takes auto, on or off; got {value!r}")
        return value.strip().lower()

    @field_validator("model_keep_alive", "snapshot_stop_wait", mode="before")
    @classmethod
    def _duration(cls, value: object, info: ValidationInfo) -> object:
        """'300', '30s', '5m', '1h' → seconds."""
        if isinstance(value, str):
            text = value.strip().lower()
            units = {"s": 1, "m": 60, "h": 3600}
            factor = units.get(text[-1:], 0)
            try:
                seconds = float(text[:-1]) * factor if factor else float(text)
            except ValueError:
                raise ValueError(f"DOCQA_{str(info.field_name).upper()} takes seconds or 30s, 5m, 1h; "
                                 f"got {value!r}") from None
            value = seconds
        if isinstance(value, int | float) and value < 0 and info.field_name == "model_keep_alive":
            raise ValueError("DOCQA_MODEL_KEEP_ALIVE cannot be negative; 0 keeps the model loaded")
        return value

    @field_validator("ocr_langs")
    @classmethod
    def _valid_ocr_langs(cls, value: str) -> str:
        langs = [lang.strip() for lang in value.split("+") if lang.strip()]
        if not langs or any(not lang.replace("_", "").isalnum() for lang in langs):
            raise ValueError(f"DOCQA_OCR_LANGS takes Tesseract language codes joined by '+' (eng+ara); got {value!r}")
        return "+".join(langs)

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, value: str | None) -> str | None:
        parse_hosts(value)
        return value

    @field_validator("kv_types")
    @classmethod
    def _known_kv_types(cls, value: str) -> str:
        types = [t.strip() for t in value.split(",") if t.strip()]
        unknown = [t for t in types if t not in ("f16", "q8_0", "q4_0")]
        if not types or unknown:
            raise ValueError(f"DOCQA_KV_TYPES takes f16, q8_0 and q4_0, comma-separated; got {value!r}")
        return ",".join(types)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'docqa.sqlite3'}"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"
