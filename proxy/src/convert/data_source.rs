//! `DataSource`s: only inline content. Files and environment variables would make
//! conversion depend on the machine it runs on, so they are rejected.

use strait_proto::envoy::config::core::v3::{DataSource, data_source::Specifier};

use crate::config::error::{Ctx, Result};

pub fn inline_bytes(ds: &DataSource, ctx: &Ctx) -> Result<Vec<u8>> {
    match &ds.specifier {
        Some(Specifier::InlineString(s)) => Ok(s.as_bytes().to_vec()),
        Some(Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(Specifier::Filename(f)) => Err(ctx.field("filename").error(format!(
            "file data sources ('{f}') are not supported; inline the content"
        ))),
        Some(Specifier::EnvironmentVariable(v)) => Err(ctx.field("environment_variable").error(
            format!("environment variable data sources ('{v}') are not supported"),
        )),
        None => Ok(Vec::new()),
    }
}

pub fn inline_text(ds: &DataSource, ctx: &Ctx) -> Result<String> {
    let bytes = inline_bytes(ds, ctx)?;
    String::from_utf8(bytes).map_err(|_| ctx.error("content is not valid UTF-8"))
}
