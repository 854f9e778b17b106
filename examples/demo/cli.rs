//! The demo's command line: `[--listen ADDR] [--database URL] [--rate-limit N/UNIT|off]
//! [--cache-ttl SECONDS]`. Any mistake is one line on stderr and exit status 2.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Args {
    pub listen: SocketAddr,
    pub database: Option<String>,
    pub rate_limit: String,
    pub cache_ttl: Option<Duration>,
}

impl Args {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            database: None,
            rate_limit: "100/s".to_owned(),
            cache_ttl: None,
        };
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--listen" => {
                    let v = value("--listen")?;
                    parsed.listen = v.parse().map_err(|_| {
                        format!("--listen: {v:?} is not an address like 127.0.0.1:8080")
                    })?;
                }
                "--database" => parsed.database = Some(value("--database")?),
                "--rate-limit" => parsed.rate_limit = value("--rate-limit")?,
                "--cache-ttl" => {
                    let v = value("--cache-ttl")?;
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| (1..=86_400).contains(s))
                        .ok_or_else(|| {
                            format!("--cache-ttl: {v:?} is not a number of seconds from 1 to 86400")
                        })?;
                    parsed.cache_ttl = Some(Duration::from_secs(secs));
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(parsed)
    }
}
