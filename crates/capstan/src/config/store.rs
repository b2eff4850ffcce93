//! Compiles `[store]`: where decisions are kept (an SQLite file by default, or memory)
//! and how many per service; and resolves a relative SQLite path against the
//! configuration file's directory.

use std::path::{Path, PathBuf};

use capstan_store::{DEFAULT_PER_SERVICE, DEFAULT_RETENTION, StoreKind, StoreSpec};

use super::reader::{Ctx, Str, Table};
use super::schema;

/// The most decisions per service `retention` accepts.
pub const MAX_RETENTION: u64 = 10_000_000;

/// `[store]` of the top-level table `top`. The SQLite path is as written (see
/// [`resolve_store`]).
pub(crate) fn compile_store(ctx: &mut Ctx<'_>, top: &Table<'_, '_>) -> StoreSpec {
    let mut spec = StoreSpec::default();
    let Some(t) = top.table(ctx, "store", schema::STORE) else {
        return spec;
    };
    let kind = t
        .choice(ctx, "kind", schema::STORE_KINDS, "store kind")
        .unwrap_or("sqlite");
    let path = t.opt::<Str>(ctx, "path");
    match (kind, path) {
        ("memory", Some(_)) => ctx.error(
            &t.span_of("path"),
            &t.path_of("path"),
            "`path` applies only to kind = \"sqlite\"",
        ),
        ("memory", None) => {
            // Memory keeps every decision, repeated holds included: a smaller default.
            spec.kind = StoreKind::Memory;
            spec.retention = DEFAULT_PER_SERVICE;
        }
        (_, Some(p)) if p.value.trim().is_empty() => {
            ctx.error(&p.span, &t.path_of("path"), "the path is empty");
        }
        (_, Some(p)) => {
            spec.kind = StoreKind::Sqlite {
                path: PathBuf::from(p.value),
            };
        }
        (_, None) => {}
    }
    if let Some(n) = t.opt::<u64>(ctx, "retention") {
        if (1..=MAX_RETENTION).contains(&n) {
            spec.retention = usize::try_from(n).unwrap_or(DEFAULT_RETENTION);
        } else {
            ctx.error(
                &t.span_of("retention"),
                &t.path_of("retention"),
                format!("must be from 1 to {MAX_RETENTION} decisions per service"),
            );
        }
    }
    t.finish(ctx);
    spec
}

/// `spec` with a relative SQLite path made relative to the directory of
/// `config_file` (the file the configuration was read from).
pub fn resolve_store(spec: &StoreSpec, config_file: &Path) -> StoreSpec {
    let mut spec = spec.clone();
    if let StoreKind::Sqlite { path } = &mut spec.kind
        && path.is_relative()
        && let Some(dir) = config_file.parent()
    {
        *path = dir.join(&*path);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file() {
        let spec = StoreSpec::default();
        let resolved = resolve_store(&spec, Path::new("etc/capstan/capstan.toml"));
        assert_eq!(
            resolved.kind,
            StoreKind::Sqlite {
                path: PathBuf::from("etc/capstan/capstan.db")
            }
        );
        let bare = resolve_store(&spec, Path::new("capstan.toml"));
        assert_eq!(
            bare.kind,
            StoreKind::Sqlite {
                path: PathBuf::from("capstan.db")
            }
        );
        let absolute = StoreSpec {
            kind: StoreKind::Sqlite {
                path: PathBuf::from("/var/lib/capstan/d.db"),
            },
            retention: 5,
        };
        assert_eq!(resolve_store(&absolute, Path::new("a/b.toml")), absolute);
        let memory = StoreSpec {
            kind: StoreKind::Memory,
            retention: 5,
        };
        assert_eq!(resolve_store(&memory, Path::new("a/b.toml")), memory);
    }
}
