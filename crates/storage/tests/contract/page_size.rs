//! The page size of a SQLite file: what a driver's every commit syncs, one page per row or
//! index entry it changes.

use std::path::Path;

/// The page size a SQLite file's header records: bytes 16–17, big-endian.
fn page_size(file: &Path) -> u32 {
    let header = std::fs::read(file).unwrap();
    u32::from(u16::from_be_bytes([header[16], header[17]]))
}

#[tokio::test]
async fn a_new_database_is_made_of_small_pages_and_an_old_one_keeps_its_own() {
    let dir = std::env::temp_dir().join(format!("steady-page-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let new = dir.join("new.db");
    let store = steady_storage::open(&format!("sqlite://{}", new.display())).await.unwrap();
    drop(store);
    assert_eq!(page_size(&new), 2048, "a new database syncs 2 KiB a changed row");

    // A database written before keeps its 4 KiB pages: SQLite changes a WAL file's page size
    // only by rewriting it whole, which opening must not do behind its owner's back.
    let old = dir.join("old.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/written-before-typed-audit/steady.db"),
        &old,
    )
    .unwrap();
    let store = steady_storage::open(&format!("sqlite://{}", old.display())).await.unwrap();
    assert!(!store.runs(&Default::default()).await.unwrap().is_empty(), "its runs still read");
    assert_eq!(store.verify_audit().await.unwrap().first_broken, None, "its audit chain holds");
    drop(store);
    assert_eq!(page_size(&old), 4096);
    std::fs::remove_dir_all(&dir).unwrap();
}
