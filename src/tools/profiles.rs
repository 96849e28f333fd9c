//! list_profiles: which databases this server exposes, for models choosing the `profile` argument.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mcp::Databases;

pub const LIST_PROFILES_DESCRIPTION: &str = "The database profiles this server exposes: name, description, access \
mode, database, host, and which is the default. Pass a name as the other tools' `profile`; without it they use \
the default.";

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProfilesParams {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub access_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub default: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListProfilesOutput {
    pub profiles: Vec<ProfileSummary>,
}

pub fn list_profiles(databases: &Databases) -> ListProfilesOutput {
    let profiles = databases
        .all()
        .iter()
        .enumerate()
        .map(|(index, db)| ProfileSummary {
            name: db.profile.name.clone(),
            description: db.profile.description.clone(),
            access_mode: db.profile.access_mode.as_str().to_string(),
            database: db.profile.conn.dbname.clone(),
            host: db.profile.conn.hosts.first().cloned(),
            default: index == 0,
        })
        .collect();
    ListProfilesOutput { profiles }
}
