//! `auth`: sign in to a provider whose API a library uses (`--transport gdrive:PATH`,
//! `dropbox:PATH`), see the sign-in, sign out. The flows live in the adapter crates; this is
//! the shell around them. Tokens never reach the output, `--json` included.

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use crate::error::user;
use crate::out::{self, outln};
use crate::remote;
use crate::session::Global;

/// `auth` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Sign in to Google Drive: prints a URL to open in a browser; the answer comes back to a
    /// loopback address on this computer. Needs ONEFOLDER_SYNC_GDRIVE_CLIENT_ID (and _SECRET).
    Gdrive,
    /// Sign in to Dropbox (PKCE: an app key, no secret): prints a URL to open in a browser.
    /// Needs ONEFOLDER_SYNC_DROPBOX_CLIENT_ID.
    Dropbox,
    /// Which providers this computer is signed in to.
    Status,
    /// Forget the sign-in of a provider (removes its token file).
    Logout {
        /// gdrive or dropbox.
        provider: String,
    },
}

/// The providers with a sign-in.
const SIGN_IN_PROVIDERS: &[&str] = &["gdrive", "dropbox"];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderStatus {
    provider: &'static str,
    compiled_in: bool,
    signed_in: bool,
    /// What the provider's adapter says of the sign-in (client id, scope, when); no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<serde_json::Value>,
}

/// Runs `auth`.
pub async fn run(cmd: AuthCommand, global: &Global) -> Result<()> {
    match cmd {
        AuthCommand::Gdrive => sign_in("gdrive", global).await,
        AuthCommand::Dropbox => sign_in("dropbox", global).await,
        AuthCommand::Status => status(global),
        AuthCommand::Logout { provider } => logout(&provider, global),
    }
}

fn check_provider(provider: &str) -> Result<&'static str> {
    SIGN_IN_PROVIDERS.iter().copied().find(|p| *p == provider).ok_or_else(|| {
        user(format!("unknown provider {provider:?} (sign-in exists for: {})", SIGN_IN_PROVIDERS.join(", ")))
    })
}

async fn sign_in(provider: &'static str, global: &Global) -> Result<()> {
    let file = remote::token_file(provider)?;
    let json = global.json;
    let show = move |url: &str| {
        if json {
            // One line a script can read; the URL holds no secret (PKCE challenge, state).
            eprintln!("{}", serde_json::json!({ "openUrl": url }));
        } else {
            eprintln!("Open this address in a browser and allow access:\n\n  {url}\n\nWaiting for the answer…");
        }
    };
    let account = remote::sign_in(provider, &file, &show).await?;
    if global.json {
        return out::json(&ProviderStatus { provider, compiled_in: true, signed_in: true, account: Some(account) });
    }
    outln!("Signed in to {provider}; the sign-in is kept in {} (readable by you only).", file.display());
    Ok(())
}

fn status(global: &Global) -> Result<()> {
    let mut all = Vec::new();
    for provider in SIGN_IN_PROVIDERS {
        let file = remote::token_file(provider)?;
        let (compiled_in, account) = match remote::auth_status(provider, &file) {
            Ok(account) => (true, account),
            Err(e) if remote::is_not_compiled(&e) => (false, None),
            Err(e) => return Err(e),
        };
        all.push(ProviderStatus { provider, compiled_in, signed_in: account.is_some(), account });
    }
    if global.json {
        return out::json(&all);
    }
    for s in &all {
        let what = match (s.compiled_in, s.signed_in) {
            (false, _) => "not compiled into this build",
            (true, true) => "signed in",
            (true, false) => "not signed in",
        };
        outln!("{:<8} {what}", s.provider);
    }
    Ok(())
}

fn logout(provider: &str, global: &Global) -> Result<()> {
    let provider = check_provider(provider)?;
    let file = remote::token_file(provider)?;
    let removed = remote::auth_logout(provider, &file)?;
    if global.json {
        return out::json(&serde_json::json!({ "provider": provider, "removed": removed }));
    }
    if removed {
        outln!("Signed out of {provider} (removed {}).", file.display());
    } else {
        outln!("Not signed in to {provider}; nothing to remove.");
    }
    Ok(())
}
