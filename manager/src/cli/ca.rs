//! `giva-manager ca`: the CA in the manager's store.

use std::path::{Path, PathBuf};

use crate::ca::write_file;
use crate::cli::args::{CaArgs, CaCommand};
use crate::pki::Pki;
use crate::store::Store;

/// Runs a `giva-manager ca` command.
///
/// # Errors
///
/// The store cannot be opened, or the command fails.
pub async fn run(args: CaArgs, default_db: PathBuf) -> anyhow::Result<()> {
    let db = args.db.unwrap_or(default_db);
    let store = Store::open(&db)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", db.display()))?;
    let pki = Pki::new(store.clone());
    let result = run_on(&pki, args.command, &crate::default_state_dir()).await;
    store.close().await;
    result
}

async fn export(pki: &Pki, dir: Option<PathBuf>, state: &Path) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| state.to_owned());
    let (ca, crl) = pki.export(&dir).await?;
    println!(
        "CAs to trust: {}; revocation lists: {}",
        ca.display(),
        crl.display()
    );
    Ok(())
}

async fn run_on(pki: &Pki, command: CaCommand, state: &Path) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { dir } => {
            let adopt = dir.clone().unwrap_or_else(|| state.to_owned());
            let (generation, made) = pki.init(Some(&adopt)).await?;
            println!(
                "CA generation {generation} {}",
                if made { "made" } else { "kept" }
            );
            export(pki, dir, state).await?;
        }
        CaCommand::Issue {
            name,
            role,
            out,
            dns,
            ip,
            days,
            delegate,
        } => {
            if delegate && role != crate::ca::Role::Appliance {
                anyhow::bail!("--delegate is for an appliance's certificate");
            }
            let issued = pki.issue(&name, role, &dns, &ip, days, "operator").await?;
            let file = name.replace(['/', '\\'], "_");
            let cert = out.join(format!("{file}.pem"));
            let key = out.join(format!("{file}.key"));
            write_file(&cert, &issued.cert_pem, false)?;
            write_file(&key, &issued.key_pem, true)?;
            let (ca, _) = pki.export(&out).await?;
            println!(
                "{name} ({}): certificate {} (serial {}), key {} (mode 0600), CAs {}",
                role.as_str(),
                cert.display(),
                issued.serial,
                key.display(),
                ca.display()
            );
            if delegate {
                let d = pki.issue_delegate(&name, days).await?;
                let dcert = out.join(format!("{file}-delegate.pem"));
                let dkey = out.join(format!("{file}-delegate.key"));
                let ckey = out.join("clone.key");
                write_file(&dcert, &d.cert_pem, false)?;
                write_file(&dkey, &d.key_pem, true)?;
                write_file(&ckey, &pki.clone_key().await?, true)?;
                println!(
                    "delegated CA {} (key {}), clone key {}",
                    dcert.display(),
                    dkey.display(),
                    ckey.display()
                );
            }
        }
        CaCommand::RotateCloneKey { dir } => {
            let key = pki.rotate_clone_key().await?;
            let path = dir.unwrap_or_else(|| state.to_owned()).join("clone.key");
            write_file(&path, &key, true)?;
            println!(
                "new clone key {}: give it to every appliance ([clones] clone_key_file) and send it SIGHUP; tokens made with the old key stop working",
                path.display()
            );
        }
        CaCommand::CloneToken { vm, ttl } => {
            println!("{}", pki.clone_token(&vm, ttl).await?);
        }
        CaCommand::Token {
            name,
            role,
            dns,
            ip,
            ttl,
        } => {
            let token = pki.make_token(role, &name, &dns, &ip, ttl).await?;
            eprintln!(
                "a one-time token for {} {name}, valid {}; it is not shown again:",
                role.as_str(),
                humantime::format_duration(ttl)
            );
            println!("{token}");
        }
        CaCommand::Revoke {
            serial,
            role,
            name,
            reason,
            dir,
        } => {
            let revoked = pki
                .revoke(serial.as_deref(), role.zip(name.as_deref()), &reason)
                .await?;
            if revoked.is_empty() {
                anyhow::bail!("no unrevoked certificate matches");
            }
            for c in &revoked {
                println!("revoked {} {} (serial {})", c.role, c.name, c.serial);
            }
            export(pki, dir, state).await?;
            println!(
                "the manager refuses these at once; give appliances the new crl.pem and send them SIGHUP"
            );
        }
        CaCommand::Rotate { dir } => {
            let generation = pki.rotate().await?;
            println!(
                "CA generation {generation} signs from now on; the older ones stay trusted until `ca retire`"
            );
            export(pki, dir, state).await?;
        }
        CaCommand::Retire { generation, dir } => {
            pki.retire(generation).await?;
            println!("CA generation {generation} is no longer trusted");
            export(pki, dir, state).await?;
        }
        CaCommand::List { json } => list(pki, json).await?,
        CaCommand::Export { dir } => export(pki, dir, state).await?,
    }
    Ok(())
}

async fn list(pki: &Pki, json: bool) -> anyhow::Result<()> {
    let store = pki.store();
    let gens = store.ca_generations().await?;
    let certs = store.certificates().await?;
    if json {
        let gens: Vec<_> = gens
            .iter()
            .map(|g| {
                serde_json::json!({
                    "generation": g.generation,
                    "subject": giva_proto::tls::certificate_name_pem(&g.cert_pem),
                    "created_at_us": g.created_at_us,
                    "retired_at_us": g.retired_at_us,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "generations": gens, "certificates": certs })
        );
        return Ok(());
    }
    for g in &gens {
        println!(
            "generation {} {} made {}{}",
            g.generation,
            giva_proto::tls::certificate_name_pem(&g.cert_pem).unwrap_or_default(),
            crate::time::format_us(g.created_at_us),
            if g.retired_at_us != 0 {
                format!(", retired {}", crate::time::format_us(g.retired_at_us))
            } else {
                String::new()
            }
        );
    }
    for c in &certs {
        let state = if c.revoked_at_us != 0 {
            format!(
                "revoked {} {}",
                crate::time::format_us(c.revoked_at_us),
                c.revoke_reason
            )
        } else {
            format!("until {}", crate::time::format_us(c.not_after_us))
        };
        println!(
            "{} gen {} {:9} {:24} {} ({})",
            c.serial, c.generation, c.role, c.name, state, c.issued_to
        );
    }
    Ok(())
}
