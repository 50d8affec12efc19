//! The topics: `GET /topics` lists them by name, `GET /topics/{topic}` says one's extent.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, param};

use crate::domain::TopicName;
use crate::http::access::ReadAccess;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::storage::TopicSummary;

/// The topics.
pub struct TopicsApi;

/// A topic: its name, its oldest and newest facts' ids, and how many facts it holds.
#[derive(Debug, Object)]
struct Topic {
    /// The topic's name.
    name: String,
    /// Its oldest fact's id.
    first_id: i64,
    /// Its newest fact's id.
    last_id: i64,
    /// How many facts it holds.
    facts: i64,
}

impl From<TopicSummary> for Topic {
    fn from(summary: TopicSummary) -> Self {
        Self {
            name: summary.name,
            first_id: summary.first_id,
            last_id: summary.last_id,
            facts: summary.facts,
        }
    }
}

/// A page of topics.
#[derive(Debug, Object)]
struct TopicPage {
    /// The topics, by name.
    topics: Vec<Topic>,
    /// Pass as `after` for the next page; null after the last topic.
    next: Option<String>,
}

#[OpenApi]
impl TopicsApi {
    /// List the topics, by name.
    ///
    /// A topic exists once it holds a fact. Only the topics the caller may read are
    /// listed. Counting a topic's facts reads its part of the log's topic index.
    #[oai(path = "/topics", method = "get")]
    async fn list_topics(
        &self,
        state: Data<&AppState>,
        access: ReadAccess,
        /// Start after this topic name.
        after: param::Query<Option<String>>,
        /// Topics per page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: param::Query<Option<i64>>,
    ) -> poem::Result<Json<TopicPage>> {
        let mut after = match after.0 {
            Some(name) => TopicName::parse(&name)
                .map_err(AppError::from)?
                .as_str()
                .to_owned(),
            None => String::new(),
        };
        let limit = limit.0.unwrap_or(100);
        // Validated to 1..=1000, so the conversion cannot fail.
        let page_len = usize::try_from(limit).unwrap_or(100);
        // A caller who may read nothing (anyone, on a server with no public topic) costs
        // no read of the index.
        if !access.may_read_some() {
            return Ok(Json(TopicPage {
                topics: Vec::new(),
                next: None,
            }));
        }
        // One more than asked tells whether there are more. Topics the caller may not
        // read are skipped, which may take several reads to fill a page.
        let mut topics = Vec::with_capacity(page_len + 1);
        loop {
            let batch = state
                .storage
                .topics(&after, limit + 1)
                .await
                .map_err(AppError::from)?;
            let exhausted = batch.len() <= page_len;
            if let Some(last) = batch.last() {
                after.clone_from(&last.name);
            }
            topics.extend(batch.into_iter().filter(|t| access.may_read(&t.name)));
            if exhausted || topics.len() > page_len {
                break;
            }
        }
        let more = topics.len() > page_len;
        topics.truncate(page_len);
        let next = topics.last().map(|t| t.name.clone()).filter(|_| more);
        Ok(Json(TopicPage {
            topics: topics.into_iter().map(Topic::from).collect(),
            next,
        }))
    }

    /// One topic; 404 when it holds no fact.
    #[oai(path = "/topics/:topic", method = "get")]
    async fn get_topic(
        &self,
        state: Data<&AppState>,
        access: ReadAccess,
        /// The topic.
        topic: param::Path<String>,
    ) -> poem::Result<Json<Topic>> {
        let name = TopicName::parse(&topic.0).map_err(AppError::from)?;
        access.require_topic(name.as_str())?;
        let summary = state
            .storage
            .topic(name.as_str())
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::NoSuchTopic(name.as_str().to_owned()))?;
        Ok(Json(summary.into()))
    }
}
