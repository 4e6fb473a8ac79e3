//! The command line, as clap types. `docs/cli.md` documents each subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Airlock: an identity-aware gateway between AI agents and production systems.
#[derive(Debug, Parser)]
#[command(name = "airlock", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "AIRLOCK_CONFIG",
        default_value = "airlock.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the configuration file; errors name the file and line.
    Check,
    /// Manage service tokens for agents.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List and replay recorded sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The store: migrate its schema, export it, import an export.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Inspect and test Cedar policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Approval requests for held statements: list and show them.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Approve a held statement (as the principal of --token, a member of its group).
    Approve(ApproveArgs),
    /// Deny a held statement, with a reason the agent is told.
    Deny(DenyArgs),
    /// Airlock's encrypted secret store (`secret:NAME` references).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Masking rules: find the columns that hold PII.
    #[command(subcommand)]
    Masking(MaskingCommand),
    /// Print a kubeconfig that points an agent's kubectl at a Kubernetes target through
    /// Airlock, with the agent's token (or a reference to it).
    Kubeconfig(KubeconfigArgs),
    /// MCP targets: the tools pinned for them, and accepting changed tools.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Show how a token is understood: principal, groups, source, expiry.
    Whoami {
        /// The token (an Airlock token or an OIDC access token), or set AIRLOCK_TOKEN.
        #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
        token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    group(
        clap::ArgGroup::new("agent_token")
            .required(true)
            .multiple(true)
            .args(["token_file", "token", "exec"])
    )
)]
pub struct KubeconfigArgs {
    #[command(subcommand)]
    pub command: Option<KubeconfigCommand>,
    /// The `kind = "kubernetes"` target the kubeconfig reaches.
    #[arg(long, required = true)]
    pub target: Option<String>,
    /// File holding the agent's token: kubectl reads it on each use (`tokenFile`), or
    /// with --exec the credential plugin does. The token is not copied.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The agent's token, written into the kubeconfig.
    #[arg(long, conflicts_with_all = ["token_file", "exec"])]
    pub token: Option<String>,
    /// Authenticate with `airlock kubeconfig credential` as kubectl's exec credential
    /// plugin, reading --token-file, or AIRLOCK_TOKEN from kubectl's environment.
    #[arg(long)]
    pub exec: bool,
    /// Base URL agents reach the gateway's [http] listener at (default:
    /// `https://<[http] listen>`); the target's name is appended.
    #[arg(long)]
    pub server: Option<String>,
    /// Name of the cluster, user and context (default: the target's name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KubeconfigCommand {
    /// kubectl's exec credential plugin (what `--exec` configures): prints an
    /// ExecCredential with the token of --token-file, or of AIRLOCK_TOKEN.
    Credential {
        /// File holding the agent's token; without it, AIRLOCK_TOKEN.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// The tools of MCP targets as pinned (first listed), and changes waiting for
    /// acceptance.
    #[command(subcommand)]
    Tools(McpToolsCommand),
}

#[derive(Debug, Subcommand)]
pub enum McpToolsCommand {
    /// The pinned tools of a target: name, state (pinned or changed), first seen,
    /// the description pinned and the one listed now.
    List {
        /// The `kind = "mcp"` target.
        #[arg(long)]
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept the changed tools of a target (or one --tool): what the upstream lists
    /// now becomes the pin, and calls are allowed again (running gateways pick it up
    /// within a second, without a restart).
    Accept {
        /// The `kind = "mcp"` target.
        #[arg(long)]
        target: String,
        /// Only this tool (default: every changed tool of the target).
        #[arg(long)]
        tool: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret; the value is read from standard input (one trailing newline is
    /// dropped). Needs the master key (AIRLOCK_MASTER_KEY or [secrets] master_key).
    Set {
        /// The name `secret:NAME` refers to.
        name: String,
    },
    /// Names and dates of the stored secrets (never their values).
    List(JsonFlag),
    /// Delete a stored secret.
    Delete {
        /// Its name.
        name: String,
    },
    /// Re-encrypt every stored secret with a new master key.
    RotateKey {
        /// File holding the new key (64 hex characters or base64 of 32 bytes).
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
    /// Print a new random master key (hex) to use as AIRLOCK_MASTER_KEY.
    GenKey,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approval requests, newest first.
    List(ApprovalsList),
    /// One request in full.
    Show {
        /// The request id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ApprovalsList {
    /// Only requests in this state: pending, approved, denied, expired, used, or all.
    #[arg(long, default_value = "pending")]
    pub status: String,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The request id.
    pub id: String,
    /// A note recorded with the approval.
    #[arg(long)]
    pub comment: Option<String>,
    /// The approver's Airlock token (or set AIRLOCK_TOKEN).
    #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the decided request as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    /// The request id.
    pub id: String,
    /// Why; the agent is told it.
    #[arg(long)]
    pub reason: String,
    /// The approver's Airlock token (or set AIRLOCK_TOKEN).
    #[arg(long, env = "AIRLOCK_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Print the decided request as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the Cedar schema policies are validated against.
    Schema,
    /// Load and validate the configured policies (or `--path`).
    Check {
        /// A policy file or folder instead of the configured `[policy] path`.
        #[arg(long)]
        path: Option<std::path::PathBuf>,
    },
    /// Show how a statement would be decided for a principal on a target.
    Explain(PolicyExplain),
    /// Re-decide recorded statements with the current policies and list what changes.
    Replay {
        /// How far back, e.g. 24h, 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PolicyExplain {
    /// The principal's name.
    #[arg(long)]
    pub principal: String,
    /// A group of the principal (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The target.
    #[arg(long)]
    pub target: String,
    /// Parse as with `standard_conforming_strings = off`.
    #[arg(long)]
    pub no_standard_conforming_strings: bool,
    /// Do not connect to the target to learn function volatility.
    #[arg(long)]
    pub offline: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The SQL to explain.
    pub sql: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token; it is printed once, alone on the last line of standard output.
    Create(TokenCreate),
    /// List tokens (never their values).
    List(JsonFlag),
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct TokenCreate {
    /// The token's name: the principal agents authenticate as.
    #[arg(long)]
    pub name: String,
    /// A group the principal belongs to (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Lifetime, e.g. 24h, 30d; none means it does not expire.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, oldest first.
    List(SessionsList),
    /// Show one session and its events in order.
    Show {
        /// Session id.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SessionsList {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only sessions on this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only sessions of this principal.
    #[arg(long)]
    pub principal: Option<String>,
    /// Only sessions of this protocol (postgres, http, kubernetes, mcp).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Only sessions in which something was: denied, held, masked, or an error
    /// (repeat to require several).
    #[arg(long, value_enum)]
    pub outcome: Vec<SessionOutcome>,
    /// Only the newest N sessions.
    #[arg(long)]
    pub limit: Option<i64>,
}

/// What a session had, for `sessions list --outcome` (the console's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionOutcome {
    /// Something was denied or refused.
    Denied,
    /// Something was held for approval.
    Held,
    /// Something of a result was masked.
    Masked,
    /// A statement or request failed, or the session ended with an error.
    Error,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Migrate a store whose schema is older than this airlock before serving (by
    /// default such a store is refused: run `airlock store migrate` after a backup).
    #[arg(long)]
    pub migrate: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Apply the schema migrations this airlock has and the store lacks (for a rolling
    /// upgrade: once, before the new replicas start).
    Migrate(JsonFlag),
    /// Write every record of the store (tokens, sessions, events, approvals, sealed
    /// secrets, MCP pins, settings) as JSON lines.
    Export {
        /// The file to write; `-` for standard output.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Read an export into this configuration's store, which must be empty (e.g. to
    /// move from SQLite to PostgreSQL; `audit verify` passes afterwards).
    Import {
        /// The file to read; `-` for standard input.
        #[arg(long, short = 'i')]
        input: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-check the event chain; exits 1 and names each problem if anything was altered.
    Verify(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum MaskingCommand {
    /// Sample a target's text columns, run the detectors, and write a `[[masking]]` rule
    /// naming the columns that hold PII, for review (read only).
    Discover(MaskingDiscover),
}

#[derive(Debug, Args)]
pub struct MaskingDiscover {
    /// The PostgreSQL target to sample (its vaulted credential is used).
    #[arg(long)]
    pub target: String,
    /// At most this many rows per table (values per column), 1 to 100000.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sample: u32,
    /// List a column when at least this share (0 to 1) of its sampled values matched.
    #[arg(long, default_value_t = 0.05, value_parser = parse_share)]
    pub min_share: f64,
    /// statement_timeout of each query, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Only tables of this schema (repeatable); default: every non-system schema.
    #[arg(long = "schema")]
    pub schemas: Vec<String>,
    /// Name of the generated rule; default `discovered-TARGET`.
    #[arg(long)]
    pub name: Option<String>,
    /// Write the rules file here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON report (with the rules text) instead of the rules file.
    #[arg(long)]
    pub json: bool,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{text}` is not a share between 0 and 1 (0.05 is 5%)"
        )),
    }
}
