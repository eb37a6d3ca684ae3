/*  sb_config_table: every setting of every switchboard binary, as an
    X-macro list (as Kannel's gwlib/cfg.def lists its settings).

    SB_SETTING (NAME, SERVICES, DEFAULT, KIND, MIN, MAX, SECRET, HELP):
    NAME is the environment variable; SERVICES the binaries that read it
    (ING, DIS, CLI, SBX, CON: SB_SVC_* bits); DEFAULT its text, NULL for none
    (or computed); KIND its parser (S_*, in sb_config.c) with bounds MIN
    and MAX; SECRET true when it is never printed; HELP one line for --help
    and the README's table.

    Whoever includes this file defines SB_SETTING first and undefines it
    after: sb_config.h makes the enum sb_setting_t of it (SB_CFG_NAME: the
    variable's whole name behind SB_CFG_, so a grep for the variable finds
    its readers), sb_config.c the table its parsers and --help read. The
    order is the order of --help and of the README's table. No include
    guard: it is meant to be included more than once.
*/
//  One setting per entry, its help on the next line: laid out by hand, clang-format leaves it
// clang-format off
SB_SETTING (SB_LOG_LEVEL, ING | DIS | CLI | SBX | CON, "info", S_LEVEL, 0, 0, false,
            "debug, info, warn or error")
// ---- ingress: HTTP --------------------------------------------------
SB_SETTING (SB_LISTEN, ING, "127.0.0.1:8080", S_LISTEN, 0, 0, false,
            "HTTP listen address of the ingress, [host:]port")
SB_SETTING (SB_PUBLIC_URL, ING | DIS | CLI | SBX, NULL, S_URL, 0, 0, false,
            "public base URL the providers call (e.g. https://hooks.example.com); Twilio signs it, used verbatim")
SB_SETTING (SB_TRUST_PROXY, ING, "0", S_BOOL, 0, 0, false,
            "1: take the scheme from X-Forwarded-Proto when SB_PUBLIC_URL is unset")
SB_SETTING (SB_PATH_PREFIX, ING | DIS | CLI | SBX, "", S_PREFIX, 0, 0, false,
            "optional path prefix of every route, e.g. /api/v1")
SB_SETTING (SB_MAX_BODY, ING, "1048576", S_INT, 1024, 64 * 1024 * 1024, false,
            "largest request body in bytes (k/m suffix allowed); Meta bodies can reach 3 MB")
SB_SETTING (SB_HTTP_THREADS, ING, "256", S_INT, 8, 4096, false,
            "HTTP worker threads; civetweb holds one per open connection, idle keep-alive ones included; each costs about 20 KiB of memory; 256 still answer webhooks with 250 idle or slow clients connected")
SB_SETTING (SB_HTTP_REQUEST_TIMEOUT_MS, ING, "10000", S_INT, 100, 600000, false,
            "cut off a client that takes longer than this to send a whole request (headers and body)")
SB_SETTING (SB_HTTP_KEEPALIVE_TIMEOUT_MS, ING, "15000", S_INT, 0, 600000, false,
            "close a keep-alive connection idle for longer than this")
SB_SETTING (SB_HTTP_QUEUE, ING, "256", S_INT, 1, 65536, false,
            "accepted connections that may wait for a free worker thread")
SB_SETTING (SB_HTTP_MAX_CONN_PER_IP, ING, "64", S_INT, 0, 65536, false,
            "connections one client address may hold; more are closed at once (0: no limit; set 0 behind a proxy, which limits per client itself)")
SB_SETTING (SB_TLS_CERT, ING, NULL, S_STRING, 0, 0, false,
            "PEM file of the ingress's TLS certificate (then its chain): serve HTTPS on SB_LISTEN; with SB_TLS_KEY")
SB_SETTING (SB_TLS_KEY, ING, NULL, S_STRING, 0, 0, false,
            "PEM file of the private key of SB_TLS_CERT (unencrypted)")
SB_SETTING (SB_TLS_CLIENT_CA, ING, NULL, S_STRING, 0, 0, false,
            "PEM bundle of the CAs a client certificate must chain to (Meta's: meta-outbound-api-ca-2025-12.pem): /meta/* then requires one, other routes do not; needs SB_TLS_CERT")
SB_SETTING (SB_TLS_CLIENT_CN, ING, NULL, S_STRING, 0, 0, false,
            "subject CN a client certificate must have, exactly (Meta's: client.webhooks.fbclientcerts.com); needs SB_TLS_CLIENT_CA")
SB_SETTING (SB_INSECURE_SKIP_SIGNATURES, ING, "0", S_BOOL, 0, 0, false,
            "1: accept unsigned webhooks (experiments only; logs a warning)")
SB_SETTING (SB_TWILIO_VOICE_TWIML, ING, NULL, S_STRING, 0, 0, false,
            "file with the TwiML answered to inbound calls (default: a 6-digit <Gather>)")
SB_SETTING (SB_TWILIO_GATHER_TWIML, ING, NULL, S_STRING, 0, 0, false,
            "file with the TwiML answered after a <Gather> (default: a thank-you <Say>)")
// ---- ingress: journal and publishing --------------------------------
SB_SETTING (SB_JOURNAL_DIR, ING | CLI, "var/journal", S_STRING, 0, 0, false,
            "directory of the ingress journal (created if missing)")
SB_SETTING (SB_JOURNAL_SEGMENT_BYTES, ING, "67108864", S_INT, 4096, (int64_t) 1 << 40, false,
            "start a new journal segment file past this size (k/m/g suffix allowed)")
SB_SETTING (SB_PUB, ING, "tcp://127.0.0.1:5556", S_ENDPOINT, 0, 0, false,
            "ZeroMQ PUB endpoint(s) the ingress binds and publishes events on")
SB_SETTING (SB_INGRESS_ID, ING, NULL, S_STRING, 0, 0, false,
            "this ingress's id in events (default: the host name)")
SB_SETTING (SB_PUB_HWM, ING, "100000", S_INT, 1, 10000000, false,
            "events queued per PUB subscriber before it misses some (it then catches up by replay)")
SB_SETTING (SB_REPLAY, ING | CLI, "tcp://127.0.0.1:5557", S_ENDPOINT, 0, 0, false,
            "ZeroMQ ROUTER endpoint(s) the ingress binds to replay its journal (switchboard replay's default)")
SB_SETTING (SB_JOURNAL_RETAIN_HOURS, ING, "72", S_INT, 0, 24 * 365 * 100, false,
            "remove journal segments whose newest record is older than this many hours (0: no age limit)")
SB_SETTING (SB_JOURNAL_MAX_BYTES, ING, "1g", S_INT, 4096, (int64_t) 1 << 50, false,
            "remove the oldest journal segments while the journal is larger (k/m/g suffix allowed)")
SB_SETTING (SB_JOURNAL_HARD_MAX_BYTES, ING, "4g", S_INT, 4096, (int64_t) 1 << 50, false,
            "past this size even segments a consumer has not acknowledged are removed (counted in sb_journal_dropped_unacked_events_total); at least SB_JOURNAL_MAX_BYTES")
SB_SETTING (SB_CONSUMER_TTL, ING, "24h", S_DURATION, 1, 366 * 86400, false,
            "a replay consumer id not heard from (by its owner) for this long is forgotten: it no longer holds journal segments back and another peer may take it (seconds, or with s/m/h/d)")
// ---- dispatcher -------------------------------------------------------
SB_SETTING (DATABASE_URL, DIS | CON, "", S_STRING, 0, 0, true,
            "PostgreSQL libpq URI or conninfo (empty: the PG* variables)")
SB_SETTING (SB_PG_TIMEOUT_MS, DIS | CON, "5000", S_INT, 250, 600000, false,
            "deadline of every PostgreSQL round trip and connect; also sets statement_timeout, lock_timeout, idle_in_transaction_session_timeout, keepalives and tcp_user_timeout unless DATABASE_URL does (the outbox worker's idle_in_transaction_session_timeout: half its lease, whatever DATABASE_URL says)")
SB_SETTING (SB_INGRESS_PUB, DIS | CON, "tcp://127.0.0.1:5556", S_ENDPOINT, 0, 0, false,
            "ingress PUB endpoint(s) the dispatcher subscribes to, comma-separated")
SB_SETTING (SB_INGRESS_REPLAY, DIS, NULL, S_ENDPOINT, 0, 0, false,
            "ingress replay endpoint(s) (their SB_REPLAY), one per SB_INGRESS_PUB endpoint in the same order; unset: tcp://127.0.0.1:5557 when SB_INGRESS_PUB is its default, else no replay")
SB_SETTING (SB_RULES, DIS, NULL, S_STRING, 0, 0, false,
            "YAML file of reply rules (see examples/rules.yaml); unset: store events, reply to none")
SB_SETTING (SB_DISPATCHER_LISTEN, DIS, "127.0.0.1:8081", S_LISTEN, 0, 0, false,
            "HTTP address of the dispatcher's /healthz, /readyz and /metrics")
SB_SETTING (SB_DISPATCHER_PUB, DIS | CON, "tcp://127.0.0.1:5558", S_ENDPOINT, 0, 0, false,
            "ZeroMQ PUB endpoint(s) the dispatcher binds and publishes its outcomes on")
SB_SETTING (SB_DISPATCHER_ID, DIS, NULL, S_STRING, 0, 0, false,
            "this dispatcher's name among several on one database, in its logs, its outcomes and the partition leases; unset: the host name, a dash and 8 random hex digits")
SB_SETTING (SB_DISPATCHER_FAILOVER_MS, DIS, "10000", S_INT, 1000, 600000, false,
            "time within which the partitions of a dispatcher that died or stopped answering move to the others (leases of three quarters of it, renewed every eighth)")
SB_SETTING (SB_STORE_SPLIT, DIS, "0", S_BOOL, 0, 0, false,
            "1: each dispatcher stores only the events of the partitions it holds (storing shared like sending; a contact's replies across two ingresses then follow one dispatcher's streams); 0: every dispatcher stores every event")
SB_SETTING (SB_MIGRATIONS_DIR, DIS, NULL, S_STRING, 0, 0, false,
            "directory of the SQL migrations; unset: for a binary run from its build tree, the source tree's dispatcher/migrations, else share/switchboard/migrations of the prefix it is installed in (found from the binary's path: bin/../share/switchboard/migrations)")
SB_SETTING (SB_RETAIN_DAYS, DIS, "90", S_INT_OFF, 7, 36500, false,
            "days events, messages and finished outbox rows are kept in PostgreSQL, then removed in small batches (contacts stay); 0 keeps everything; at least 7, the providers' webhook retry window, so a retry is still recognised")
SB_SETTING (SB_BATCH_MAX, DIS, "500", S_INT, 1, 10000, false,
            "most events stored in one PostgreSQL transaction")
SB_SETTING (SB_QUEUE_MAX, DIS, "100000", S_INT, 1000, 10000000, false,
            "events held in memory (ZeroMQ receive queue) while PostgreSQL is away")
SB_SETTING (SB_SEND_MAX_ATTEMPTS, DIS, "8", S_INT, 1, 100, false,
            "attempts before an outbox row is dead")
SB_SETTING (SB_SEND_BACKOFF_BASE_MS, DIS, "500", S_INT, 1, 3600000, false,
            "first retry delay; doubles each attempt, with jitter")
SB_SETTING (SB_SEND_BACKOFF_MAX_MS, DIS, "300000", S_INT, 1, 86400000, false,
            "longest retry delay")
// ---- ZeroMQ across hosts: CURVE (README "Running the services on separate hosts")
SB_SETTING (SB_CURVE_SERVER_SECRET, ING | DIS, NULL, S_STRING, 0, 0, true,
            "this server's CURVE key pair: the NAME.key_secret file `switchboard keygen` wrote, or the Z85 secret key; every ZeroMQ socket it binds then uses CURVE")
SB_SETTING (SB_CURVE_ALLOWED, ING | DIS, NULL, S_STRING, 0, 0, false,
            "with SB_CURVE_SERVER_SECRET: directory of the public certificates (NAME.key) of the clients admitted, reread when it changes; * admits any client key")
SB_SETTING (SB_CURVE_SERVER_PUBLIC, DIS | CLI | CON, NULL, S_STRING, 0, 0, false,
            "the CURVE public key (Z85, or its NAME.key file) of the server this process connects to; every ZeroMQ socket it connects then uses CURVE")
SB_SETTING (SB_CURVE_CLIENT_CERT, DIS | CLI | CON, NULL, S_STRING, 0, 0, true,
            "with SB_CURVE_SERVER_PUBLIC: this client's key pair, the NAME.key_secret file `switchboard keygen` wrote (or the Z85 secret key)")
SB_SETTING (SB_ZMQ_ALLOW_PLAINTEXT, ING | DIS | CLI | CON, "0", S_BOOL, 0, 0, false,
            "1: allow binding a non-loopback ZeroMQ endpoint without CURVE (a trusted private network only)")
// ---- provider secrets -------------------------------------------------
SB_SETTING (TWILIO_AUTH_TOKEN, ING | DIS | CLI | SBX, NULL, S_STRING, 0, 0, true,
            "Twilio auth token: validates X-Twilio-Signature (and authenticates sends)")
SB_SETTING (TWILIO_WEBHOOK_SHARED_KEYS, ING, NULL, S_SIG_KEYS, 0, 0, true,
            "Twilio webhook shared keys, KEY_ID=SECRET pairs, comma-separated (several while rotating): validate webhooks sent with X-Twilio-Webhooks-Signature-Settings")
SB_SETTING (META_APP_SECRET, ING | CLI | SBX, NULL, S_STRING, 0, 0, true,
            "Meta app secret: validates X-Hub-Signature-256")
SB_SETTING (META_VERIFY_TOKEN, ING | CLI, NULL, S_STRING, 0, 0, true,
            "token Meta echoes in the GET /meta/whatsapp subscription handshake")
// ---- sending replies (dispatcher; the sandbox checks the same credentials)
SB_SETTING (TWILIO_ACCOUNT_SID, DIS | CLI | SBX, NULL, S_STRING, 0, 0, false,
            "Twilio account SID (AC + 32 hex digits) that replies are sent from")
SB_SETTING (TWILIO_API_KEY, DIS | CLI | SBX, NULL, S_STRING, 0, 0, false,
            "Twilio API key SID (SK...): with TWILIO_API_SECRET, authenticates sends instead of the auth token")
SB_SETTING (TWILIO_API_SECRET, DIS | CLI | SBX, NULL, S_STRING, 0, 0, true,
            "secret of TWILIO_API_KEY")
SB_SETTING (TWILIO_API_BASE, DIS | CLI, "https://api.twilio.com", S_URL, 0, 0, false,
            "base URL of the Twilio REST API (the sandbox: http://127.0.0.1:8090)")
SB_SETTING (META_ACCESS_TOKEN, DIS | CLI | SBX, NULL, S_STRING, 0, 0, true,
            "Meta access token (system user) that sends WhatsApp Cloud API messages")
SB_SETTING (META_API_BASE, DIS | CLI, "https://graph.facebook.com", S_URL, 0, 0, false,
            "base URL of the Meta Graph API (the sandbox: http://127.0.0.1:8090)")
SB_SETTING (META_API_VERSION, DIS | CLI, "v23.0", S_STRING, 0, 0, false,
            "Graph API version in send URLs, like v23.0")
// ---- going live: switchboard connect and doctor's provider checks --------
SB_SETTING (TWILIO_MESSAGING_API_BASE, CLI, "https://messaging.twilio.com", S_URL, 0, 0, false,
            "base URL of Twilio's Messaging API (Messaging Services), read by switchboard doctor (the sandbox: http://127.0.0.1:8090)")
SB_SETTING (TWILIO_PHONE_NUMBER, CLI, NULL, S_E164, 0, 0, false,
            "the Twilio number (+E.164) whose webhook URLs switchboard doctor checks and switchboard connect twilio sets by default")
SB_SETTING (META_APP_ID, CLI, NULL, S_DIGITS, 0, 0, false,
            "the Meta app's id: switchboard doctor checks its webhook subscription, switchboard connect meta sets it by default")
SB_SETTING (META_WABA_ID, CLI, NULL, S_DIGITS, 0, 0, false,
            "the WhatsApp Business Account id: switchboard doctor checks the app is subscribed to it, switchboard connect meta subscribes it by default")
SB_SETTING (SB_SEND_CONCURRENCY, DIS, "256", S_INT, 1, 1024, false,
            "most provider requests (and bot forwards) in flight at once; at 200 ms a send, 256 carry over 1,000 replies a second (bench/README.md)")
SB_SETTING (SB_META_SEND_RATE, DIS, "80", S_INT, 0, 100000, false,
            "most sends a second per Meta phone number id (Meta's default throughput is 80; 0: no limit); a conversation's order holds")
SB_SETTING (SB_TWILIO_SEND_RATE, DIS, "0", S_INT, 0, 100000, false,
            "most sends a second per Twilio From number (0: no limit); a conversation's order holds")
SB_SETTING (SB_SEND_TIMEOUT_MS, DIS, "10000", S_INT, 100, 600000, false,
            "total time allowed for one provider request; past it the send is retried")
SB_SETTING (SB_SEND_CONNECT_TIMEOUT_MS, DIS, "3000", S_INT, 100, 600000, false,
            "time allowed to connect to a provider (TCP and TLS)")
SB_SETTING (SB_API_CA_FILE, DIS, NULL, S_STRING, 0, 0, false,
            "PEM bundle of the CAs trusted for HTTPS to the providers' APIs and to forward URLs, instead of the system's (a TLS-inspecting egress proxy, a bot behind a private CA)")
// ---- the live console (switchboard console) ---------------------------
SB_SETTING (SB_CONSOLE_LISTEN, CON, "127.0.0.1:8082", S_LISTEN, 0, 0, false,
            "HTTP listen address of the console's page, [host:]port; other than 127.0.0.1 or [::1] it requires SB_CONSOLE_TOKEN")
SB_SETTING (SB_CONSOLE_TOKEN, CON, NULL, S_STRING, 0, 0, true,
            "when set, every console request but /healthz needs it: the login form's HttpOnly cookie or Authorization: Bearer; else 401")
// ---- the local provider sandbox (switchboard sandbox) -----------------
SB_SETTING (SB_SANDBOX_LISTEN, SBX, "127.0.0.1:8090", S_LISTEN, 0, 0, false,
            "HTTP listen address of the sandbox, [host:]port")
SB_SETTING (SB_SANDBOX_CALLBACKS, SBX, NULL, S_URL, 0, 0, false,
            "ingress base URL (with SB_PATH_PREFIX) the sandbox posts signed status callbacks to")
// clang-format on
