//! One module per subcommand.

mod approvals;
mod audit;
mod check;
mod kubeconfig;
mod masking;
mod mcp;
mod policy;
mod secret;
mod serve;
mod sessions;
mod store;
mod token;
mod watch;
mod whoami;

use std::process::ExitCode;

use crate::cli::{
    ApprovalsCommand, AuditCommand, Cli, Command, KubeconfigCommand, MaskingCommand, McpCommand,
    McpToolsCommand, PolicyCommand, SecretCommand, SessionsCommand, StoreCommand, TokenCommand,
};

/// Runs the parsed command; `Err` is printed by `main` and exits 2.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.config, args.migrate).await,
        Command::Store(StoreCommand::Migrate(f)) => store::migrate(&cli.config, f.json).await,
        Command::Store(StoreCommand::Export { output }) => {
            store::export(&cli.config, &output).await
        }
        Command::Store(StoreCommand::Import { input }) => store::import(&cli.config, &input).await,
        Command::Check => check::run(&cli.config).await,
        Command::Token(TokenCommand::Create(args)) => token::create(&cli.config, args).await,
        Command::Token(TokenCommand::List(f)) => token::list(&cli.config, f.json).await,
        Command::Token(TokenCommand::Revoke { name }) => token::revoke(&cli.config, &name).await,
        Command::Sessions(SessionsCommand::List(args)) => sessions::list(&cli.config, args).await,
        Command::Sessions(SessionsCommand::Show { id, json }) => {
            sessions::show(&cli.config, &id, json).await
        }
        Command::Audit(AuditCommand::Verify(f)) => audit::verify(&cli.config, f.json).await,
        Command::Policy(PolicyCommand::Schema) => policy::schema(),
        Command::Policy(PolicyCommand::Check { path }) => {
            policy::check(&cli.config, path.as_deref())
        }
        Command::Policy(PolicyCommand::Explain(args)) => policy::explain(&cli.config, args).await,
        Command::Policy(PolicyCommand::Replay { since, json }) => {
            policy::replay(&cli.config, since, json).await
        }
        Command::Approvals(ApprovalsCommand::List(args)) => {
            approvals::list(&cli.config, args).await
        }
        Command::Approvals(ApprovalsCommand::Show { id, json }) => {
            approvals::show(&cli.config, &id, json).await
        }
        Command::Approve(args) => {
            approvals::decide(
                &cli.config,
                &args.id,
                &args.token,
                true,
                args.comment,
                args.json,
            )
            .await
        }
        Command::Secret(SecretCommand::Set { name }) => secret::set(&cli.config, &name).await,
        Command::Secret(SecretCommand::List(f)) => secret::list(&cli.config, f.json).await,
        Command::Secret(SecretCommand::Delete { name }) => secret::delete(&cli.config, &name).await,
        Command::Secret(SecretCommand::RotateKey { new_key_file }) => {
            secret::rotate_key(&cli.config, &new_key_file).await
        }
        Command::Secret(SecretCommand::GenKey) => secret::gen_key(),
        Command::Masking(MaskingCommand::Discover(args)) => {
            masking::discover(&cli.config, args).await
        }
        Command::Kubeconfig(args) => match args.command {
            Some(KubeconfigCommand::Credential { token_file }) => {
                kubeconfig::credential(token_file.as_deref())
            }
            None => kubeconfig::print(&cli.config, args),
        },
        Command::Mcp(McpCommand::Tools(McpToolsCommand::List { target, json })) => {
            mcp::list_tools(&cli.config, &target, json).await
        }
        Command::Mcp(McpCommand::Tools(McpToolsCommand::Accept { target, tool, json })) => {
            mcp::accept_tools(&cli.config, &target, tool.as_deref(), json).await
        }
        Command::Whoami { token, json } => whoami::run(&cli.config, &token, json).await,
        Command::Deny(args) => {
            approvals::decide(
                &cli.config,
                &args.id,
                &args.token,
                false,
                Some(args.reason),
                args.json,
            )
            .await
        }
    }
}
