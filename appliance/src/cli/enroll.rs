//! `giva enroll`: this appliance's certificate from the manager, against a
//! one-time token.

use giva_proto::manager::EnrollRequest;
use giva_proto::manager::manager_service_client::ManagerServiceClient;

use crate::cli::args::EnrollArgs;

/// Runs `giva enroll`.
///
/// # Errors
///
/// No token, an unreachable manager, a refused token, or files that
/// cannot be written.
pub async fn run(args: &EnrollArgs) -> anyhow::Result<()> {
    let token = giva_proto::enroll::read_token(args.token_file.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| giva_runtime::dirs::state_dir("giva").join("tls"));
    let (key_pem, csr_pem) = giva_proto::enroll::request(&out, "appliance", args.force)?;
    // A second key, for the delegated CA that signs instant clones.
    let (delegate_key_pem, delegate_csr_pem) =
        giva_proto::enroll::request(&out, "delegate", args.force)?;
    let files = giva_proto::tls::ClientFiles {
        ca: args.ca_file.clone(),
        ..Default::default()
    };
    let channel = files
        .endpoint(&args.manager)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the manager at {}: {}",
                args.manager,
                giva_proto::tls::explain(&e)
            )
        })?;
    let answer = ManagerServiceClient::new(channel)
        .enroll(EnrollRequest {
            token,
            csr_pem,
            role: "appliance".into(),
            delegate_csr_pem,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the manager refused the enrollment: {}", s.message()))?
        .into_inner();
    if answer.role != "appliance" {
        anyhow::bail!(
            "the token is for a {} ({}), not an appliance: use it with giva-shim enroll",
            answer.role,
            answer.name
        );
    }
    let saved = giva_proto::enroll::save(&out, "appliance", &key_pem, &answer)?;
    let clones = if answer.delegate_cert_pem.contains("BEGIN CERTIFICATE") {
        let files = [
            (
                out.join("delegate.pem"),
                answer.delegate_cert_pem.as_str(),
                false,
            ),
            (out.join("clone.key"), answer.clone_key.as_str(), true),
            (out.join("delegate.key"), delegate_key_pem.as_str(), true),
        ];
        for (path, text, private) in &files {
            giva_runtime::dirs::write_file(path, text, *private)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        format!(
            "\n\n[clones]\ndelegate_cert_file = \"{}\"\ndelegate_key_file = \"{}\"\nclone_key_file = \"{}\"",
            files[0].0.display(),
            files[2].0.display(),
            files[1].0.display()
        )
    } else {
        String::new()
    };
    eprintln!(
        "enrolled as appliance {}: certificate {}, key {} (mode 0600)",
        saved.name,
        saved.cert.display(),
        saved.key.display()
    );
    // The configuration that uses them, on standard output.
    println!(
        "appliance_id = \"{name}\"\n\n[manager]\nurl = \"{url}\"\nca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\n[server]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{key}\"\nclient_ca_file = \"{ca}\"\ncrl_file = \"{crl}\"{clones}",
        name = saved.name,
        url = args.manager,
        ca = saved.ca.display(),
        cert = saved.cert.display(),
        key = saved.key.display(),
        crl = saved.crl.display(),
    );
    Ok(())
}
