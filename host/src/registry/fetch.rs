//! Downloading a component and its signature (`URL` and `URL.sig`) for `host plugin install`.

use std::time::Duration;

/// Refuse downloads larger than this: a component is a few MiB; a server sending more is
/// broken or hostile, and the whole download is held in memory.
const MAX_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not download {url}: {message}")]
    Http { url: String, message: String },
    #[error("could not download {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("could not download {url}: it is larger than {} MiB", MAX_BYTES >> 20)]
    TooLarge { url: String },
}

/// The component at `url`, and its signature file's text if `url.sig` exists (404: none).
pub fn component(url: &str) -> Result<(Vec<u8>, Option<String>), FetchError> {
    let http = |e: &dyn std::fmt::Display| FetchError::Http {
        url: url.to_string(),
        message: e.to_string(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| http(&e))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| http(&e))?;
        let wasm = get(&client, url).await?.ok_or_else(|| FetchError::Status {
            url: url.to_string(),
            status: 404,
        })?;
        let signature = get(&client, &format!("{url}.sig"))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        Ok((wasm, signature))
    })
}

/// The body at `url`; `None` when the server says 404.
async fn get(client: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, FetchError> {
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        message: error_chain(&e),
    };
    let mut response = client.get(url).send().await.map_err(http)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http)? {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// reqwest's top-level messages ("error sending request") hide the cause.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
