//! Reading collections for the sync: pages with a page-size preference (delta queries take
//! `Prefer: odata.maxpagesize`, which only `$batch` items can carry here) and many small
//! collections at once (`$batch` of 20, a few batches in flight).

use crate::endpoints::Endpoints;
use crate::graph::{ApiVersion, BatchRequest, GraphClient, GraphError};
use futures::StreamExt;
use http::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// One page of a collection read through `$batch`: items (JSON values unless the reader asks
/// for a type of its own, which keeps big pages compact) and where the next page (or, on the
/// last page of a delta query, the next round) is, relative to the version root.
#[derive(Debug)]
pub struct RelPage<T = Value> {
    pub items: Vec<T>,
    pub next: Option<String>,
    pub delta: Option<String>,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// `https://graph/v1.0/users/delta?$skiptoken=…` → `users/delta?$skiptoken=…`; a link to another
/// host or version is refused (the token must not travel there).
pub fn relative(
    endpoints: &Endpoints,
    version: ApiVersion,
    link: &str,
) -> Result<String, GraphError> {
    let base = endpoints.graph_base().as_str().trim_end_matches('/');
    let prefix = format!("{base}/{}/", version.as_str());
    link.strip_prefix(&prefix)
        .map(str::to_string)
        .ok_or_else(|| GraphError::UnsafeLink {
            host: url::Url::parse(link)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "an unreadable link".into()),
        })
}

fn request(id: usize, rel: &str, page_size: Option<u32>) -> BatchRequest {
    let mut headers = BTreeMap::new();
    if let Some(n) = page_size {
        headers.insert("Prefer".to_string(), format!("odata.maxpagesize={n}"));
    }
    BatchRequest {
        id: id.to_string(),
        method: Method::GET,
        url: rel.to_string(),
        headers,
        body: None,
    }
}

/// Reads a page answered inside a `$batch` (its links relative to the version root of
/// `endpoints`' Graph).
pub fn parse_page<T: DeserializeOwned>(
    endpoints: &Endpoints,
    version: ApiVersion,
    body: Option<&RawValue>,
) -> Result<RelPage<T>, GraphError> {
    let raw: RawPage<T> = serde_json::from_str(body.map_or("null", RawValue::get))
        .map_err(|e| GraphError::Decode(e.to_string()))?;
    Ok(RelPage {
        items: raw.value,
        next: raw
            .next_link
            .map(|l| relative(endpoints, version, &l))
            .transpose()?,
        delta: raw
            .delta_link
            .map(|l| relative(endpoints, version, &l))
            .transpose()?,
    })
}

/// GETs one page (`rel` relative to the version root) asking for `page_size` items.
pub async fn page<T: DeserializeOwned>(
    graph: &GraphClient,
    version: ApiVersion,
    rel: &str,
    page_size: Option<u32>,
) -> Result<RelPage<T>, GraphError> {
    let mut out = graph
        .batch(version, vec![request(0, rel, page_size)])
        .await?;
    let item = out
        .pop()
        .ok_or_else(|| GraphError::Decode("$batch answered no response".into()))??;
    parse_page(graph.tokens().endpoints(), version, item.body.as_deref())
}

/// Reads many collections to the end (each followed through its next links), 20 per `$batch`
/// and up to `concurrency` batches in flight. Returns `(index, items)` in any order, or the
/// first error. A 404 (the object was deleted meanwhile) reads as empty.
pub async fn collections(
    graph: &GraphClient,
    version: ApiVersion,
    rels: Vec<String>,
    concurrency: usize,
) -> Result<Vec<(usize, Vec<Value>)>, GraphError> {
    let mut items: Vec<Vec<Value>> = vec![Vec::new(); rels.len()];
    let mut pending: Vec<(usize, String)> = rels.into_iter().enumerate().collect();
    while !pending.is_empty() {
        let chunks: Vec<Vec<(usize, String)>> = pending.chunks(20).map(|c| c.to_vec()).collect();
        pending = Vec::new();
        let mut results = futures::stream::iter(chunks.into_iter().map(|chunk| async move {
            let reqs = chunk
                .iter()
                .map(|(i, rel)| request(*i, rel, None))
                .collect::<Vec<_>>();
            let out = graph.batch(version, reqs).await?;
            Ok::<_, GraphError>(chunk.into_iter().zip(out).collect::<Vec<_>>())
        }))
        .buffer_unordered(concurrency.max(1));
        while let Some(r) = results.next().await {
            for ((i, _), res) in r? {
                match res {
                    Ok(resp) => {
                        let p: RelPage =
                            parse_page(graph.tokens().endpoints(), version, resp.body.as_deref())?;
                        items[i].extend(p.items);
                        if let Some(n) = p.next {
                            pending.push((i, n));
                        }
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(items.into_iter().enumerate().collect())
}
