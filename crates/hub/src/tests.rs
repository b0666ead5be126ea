//! The command line's flags.

use super::*;

fn grant(extra: &[&str]) -> Result<Cli, clap::Error> {
    let user = Uuid::new_v4().to_string();
    let mut args = vec![
        "hub", "credits", "grant", "--user", &user, "--amount", "100",
    ];
    args.extend(["--reason", "launch promo"]);
    args.extend(extra);
    Cli::try_parse_from(args)
}

#[test]
fn grant_flags_parse_and_refuse_bad_input() {
    let ahead = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let Ok(Cli {
        command:
            Command::Credits {
                command:
                    CreditsCommand::Grant {
                        expires_at,
                        priority,
                        ..
                    },
            },
    }) = grant(&["--expires-at", &ahead, "--priority", "10"])
    else {
        panic!("a grant with an end date and a priority parses");
    };
    assert!(expires_at.is_some());
    assert_eq!(priority, Some(10));
    assert!(grant(&[]).is_ok());
    for bad in [
        &["--expires-at", "2001-01-01T00:00:00Z"][..],
        &["--expires-at", "next tuesday"],
        &["--priority", "101"],
        &["--priority", "-1"],
    ] {
        assert!(grant(bad).is_err(), "{bad:?}");
    }
}
