//! # onefolder-node
//!
//! OneFolder Sync inside a Node.js process (napi-rs): the JS class `Library` opens a library
//! on the folder transport (`<folder>/onefolder_tags`), runs the model's queries and edits,
//! and runs the sync loop on the addon's tokio runtime. Every call that reads or writes the
//! library returns a Promise; the work runs on tokio (blocking model calls on its blocking
//! pool), never on the JS thread. Errors reject with a JS `Error` carrying a string `code`
//! (see [`error::Code`]). The binding is thin: the rules are the model's.
//!
//! The npm package beside this crate (`package.json`, `index.js`, `index.d.ts`) loads the
//! built addon; `npm test` runs the tests in `test/`.

#![warn(missing_docs)]

pub mod dto;
pub mod error;
pub mod open;
pub mod storage;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use napi::bindgen_prelude::{Env, PromiseRaw, ToNapiValue};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use onefolder_core::Replica;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::dto::{File, FileMeta, Location, OpenOptions, Tag, to_js_json};
use crate::error::{Code, Failure};
use crate::open::Mode;

/// The model on an open replica.
pub type Model = onefolder_model::Library<Arc<Replica>>;

/// The JS callback of `onEvent`: called with one event object, its return value ignored. Weak:
/// a listener alone does not keep the Node.js process alive.
type EventCallback =
    ThreadsafeFunction<Value, napi::bindgen_prelude::Unknown<'static>, Value, napi::Status, false, true>;

/// The running sync loop.
struct SyncLoop {
    /// Dropping or sending ends the loop (after its final flush).
    stop: oneshot::Sender<()>,
    /// The loop's task.
    task: JoinHandle<onefolder_core::Result<()>>,
}

/// What a JS `Library` object holds; shared with the futures of its calls.
struct Shared {
    /// The model; `None` once closed.
    model: RwLock<Option<Arc<Model>>>,
    /// The sync loop, while it runs.
    sync: tokio::sync::Mutex<Option<SyncLoop>>,
    /// Event forwarders by listener id.
    listeners: Mutex<BTreeMap<u32, JoinHandle<()>>>,
    /// The next listener id.
    next_listener: AtomicU32,
    /// This computer's side of the library (for `storage`).
    local: Arc<storage::Local>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for (_, task) in std::mem::take(self.listeners.get_mut().unwrap_or_else(|e| e.into_inner())) {
            task.abort();
        }
    }
}

impl Shared {
    fn model(&self) -> Result<Arc<Model>, Failure> {
        self.model
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Failure::new(Code::Invalid, "the library is closed"))
    }

    /// Stops the sync loop, if it runs, and waits for its final flush.
    async fn stop_sync(&self) -> Result<(), Failure> {
        let Some(SyncLoop { stop, task }) = self.sync.lock().await.take() else {
            return Ok(());
        };
        let _ = stop.send(());
        task.await??;
        Ok(())
    }

    fn stop_listeners(&self) {
        for (_, task) in std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner())) {
            task.abort();
        }
    }
}

/// Runs `fut` on the addon's tokio runtime and returns its Promise: resolved with `map` of
/// its value, or rejected with a JS error carrying the failure's `code`. `map` runs on the JS
/// thread.
fn promise<'env, T, V>(
    env: &'env Env,
    fut: impl Future<Output = Result<T, Failure>> + Send + 'static,
    map: impl FnOnce(T) -> V + 'static,
) -> napi::Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    V: ToNapiValue,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, move |env, outcome| match outcome {
        Ok(value) => Ok(map(value)),
        Err(failure) => Err(failure.into_napi(env)),
    })
}

/// A OneFolder library opened on this device, kept in sync through the shared folder.
#[napi]
pub struct Library {
    shared: Arc<Shared>,
}

#[napi]
impl Library {
    fn from_replica((replica, folder): (Replica, std::path::PathBuf)) -> Library {
        let model = Model::new(Arc::new(replica));
        Library {
            shared: Arc::new(Shared {
                model: RwLock::new(Some(Arc::new(model))),
                sync: tokio::sync::Mutex::new(None),
                listeners: Mutex::new(BTreeMap::new()),
                next_listener: AtomicU32::new(1),
                local: Arc::new(storage::Local::new(folder)),
            }),
        }
    }

    fn opened<'env>(env: &'env Env, options: OpenOptions, mode: Mode) -> napi::Result<PromiseRaw<'env, Library>> {
        promise(env, open::open(options, mode), Library::from_replica)
    }

    /// Creates a library in `options.folder` (fails if it holds one) with new local state in
    /// `options.stateDir`.
    #[napi]
    pub fn create<'env>(env: &'env Env, options: OpenOptions) -> napi::Result<PromiseRaw<'env, Library>> {
        Self::opened(env, options, Mode::Create)
    }

    /// Joins the library in `options.folder` (rejects with `NOT_A_LIBRARY` if there is none).
    #[napi]
    pub fn join<'env>(env: &'env Env, options: OpenOptions) -> napi::Result<PromiseRaw<'env, Library>> {
        Self::opened(env, options, Mode::Join)
    }

    /// Opens local state set up before by `create` or `join` (rejects with `LOCKED` while
    /// another `Library` or process holds it).
    #[napi]
    pub fn open<'env>(env: &'env Env, options: OpenOptions) -> napi::Result<PromiseRaw<'env, Library>> {
        Self::opened(env, options, Mode::Open)
    }

    /// Runs a model call on the blocking pool and converts its answer with `map`.
    fn model<'env, T, V>(
        &self,
        env: &'env Env,
        call: impl FnOnce(&Model) -> onefolder_model::Result<T> + Send + 'static,
        map: impl FnOnce(T) -> V + 'static,
    ) -> napi::Result<PromiseRaw<'env, V>>
    where
        T: Send + 'static,
        V: ToNapiValue,
    {
        let model = self.shared.model();
        promise(
            env,
            async move {
                let model = model?;
                tokio::task::spawn_blocking(move || call(&model).map_err(Failure::from)).await?
            },
            map,
        )
    }

    // ------------------------------------------------------------------ tags

    /// Every tag, in id order, each with its effective parent.
    #[napi]
    pub fn tags<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Vec<Tag>>> {
        self.model(env, |m| m.tags(), |tags| tags.into_values().map(Tag::from).collect())
    }

    /// Creates a tag under `parentId` (or at the root) and resolves with its id; a tag of the
    /// same name there already is the tag.
    #[napi]
    pub fn create_tag<'env>(
        &self,
        env: &'env Env,
        name: String,
        parent_id: Option<String>,
        color: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        self.model(env, move |m| m.create_tag(parent_id.as_deref(), &name, color.as_deref()), |id| id)
    }

    /// Renames a tag.
    #[napi]
    pub fn rename_tag<'env>(&self, env: &'env Env, tag_id: String, name: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.rename_tag(&tag_id, &name), |()| ())
    }

    /// Deletes a tag and its subtree, and removes them from every file.
    #[napi]
    pub fn delete_tag<'env>(&self, env: &'env Env, tag_id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.delete_tag(&tag_id), |()| ())
    }

    /// Moves a tag under `parentId` (the root when null), after its last sibling there.
    #[napi]
    pub fn move_tag<'env>(
        &self,
        env: &'env Env,
        tag_id: String,
        parent_id: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.move_tag(&tag_id, parent_id.as_deref()), |()| ())
    }

    /// Places a tag among its siblings between `afterId` and `beforeId` (either may be null).
    #[napi]
    pub fn reorder_tag<'env>(
        &self,
        env: &'env Env,
        tag_id: String,
        after_id: Option<String>,
        before_id: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.reorder_tag(&tag_id, after_id.as_deref(), before_id.as_deref()), |()| ())
    }

    /// Sets (or with null clears) a tag's colour.
    #[napi]
    pub fn set_tag_color<'env>(
        &self,
        env: &'env Env,
        tag_id: String,
        color: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.set_tag_color(&tag_id, color.as_deref()), |()| ())
    }

    /// Hides or shows a tag.
    #[napi]
    pub fn set_tag_hidden<'env>(
        &self,
        env: &'env Env,
        tag_id: String,
        hidden: bool,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.set_tag_hidden(&tag_id, hidden), |()| ())
    }

    /// Gives every file tagged `fromId` the tag `intoId`, moves `fromId`'s children under it,
    /// and deletes `fromId`.
    #[napi]
    pub fn merge_tags<'env>(
        &self,
        env: &'env Env,
        from_id: String,
        into_id: String,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.merge_tags(&from_id, &into_id), |()| ())
    }

    // ------------------------------------------------------------------ files

    /// Every file, in id order.
    #[napi]
    pub fn files<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Vec<File>>> {
        self.model(env, |m| m.files(), |files| files.into_values().map(File::from).collect())
    }

    /// The files carrying `tagId` or, with `recursive`, it or a tag below it.
    #[napi]
    pub fn files_with_tag<'env>(
        &self,
        env: &'env Env,
        tag_id: String,
        recursive: bool,
    ) -> napi::Result<PromiseRaw<'env, Vec<File>>> {
        self.model(
            env,
            move |m| m.files_with_tag(&tag_id, recursive),
            |files| files.into_iter().map(File::from).collect(),
        )
    }

    /// Adds or updates the file at `relPath` in the location `locationId`; resolves with its id.
    #[napi]
    pub fn upsert_file<'env>(
        &self,
        env: &'env Env,
        location_id: String,
        rel_path: String,
        meta: Option<FileMeta>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        let meta = onefolder_model::FileMeta::from(meta.unwrap_or_default());
        self.model(env, move |m| m.upsert_file(&location_id, &rel_path, &meta), |id| id)
    }

    /// Removes a file record.
    #[napi]
    pub fn remove_file<'env>(&self, env: &'env Env, file_id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.remove_file(&file_id), |()| ())
    }

    /// Sets (or with null clears) a file's annotations.
    #[napi]
    pub fn set_annotations<'env>(
        &self,
        env: &'env Env,
        file_id: String,
        text: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.set_annotations(&file_id, text.as_deref()), |()| ())
    }

    /// The files that carry no (existing) tag, in id order.
    #[napi]
    pub fn untagged_files<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Vec<File>>> {
        self.model(env, |m| m.untagged_files(), |files| files.into_iter().map(File::from).collect())
    }

    /// How many files there are, and how many of them carry no tag: `{ files, untagged }`.
    #[napi(ts_return_type = "Promise<{ files: number; untagged: number }>")]
    pub fn file_counts<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        self.model(env, |m| m.file_counts(), |counts| to_js_json(&counts))
    }

    /// Assigns a tag to a file.
    #[napi]
    pub fn assign<'env>(&self, env: &'env Env, file_id: String, tag_id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.assign(&file_id, &tag_id), |()| ())
    }

    /// Removes a tag from a file.
    #[napi]
    pub fn unassign<'env>(
        &self,
        env: &'env Env,
        file_id: String,
        tag_id: String,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.unassign(&file_id, &tag_id), |()| ())
    }

    // ------------------------------------------------------------------ locations

    /// Adds (or matches) a location; `relPath` is its folder relative to the library folder
    /// when it lies inside it (`""` = the library folder). Resolves with its id.
    #[napi]
    pub fn add_location<'env>(
        &self,
        env: &'env Env,
        name: String,
        rel_path: Option<String>,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        self.model(env, move |m| m.add_location(&name, rel_path.as_deref()), |id| id)
    }

    /// Removes a location and every file record in it.
    #[napi]
    pub fn remove_location<'env>(&self, env: &'env Env, location_id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.remove_location(&location_id), |()| ())
    }

    /// Excludes (or includes again) a location-relative sub-folder from indexing.
    #[napi]
    pub fn set_exclusion<'env>(
        &self,
        env: &'env Env,
        location_id: String,
        rel_path: String,
        excluded: bool,
    ) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.set_exclusion(&location_id, &rel_path, excluded), |()| ())
    }

    // ------------------------------------------------------------------ saved searches

    /// Saves a search (OneFolder's criteria list as JSON); resolves with its id.
    #[napi]
    pub fn save_search<'env>(
        &self,
        env: &'env Env,
        name: String,
        criteria_json: String,
        match_any: bool,
    ) -> napi::Result<PromiseRaw<'env, String>> {
        self.model(
            env,
            move |m| {
                let criteria: Value = serde_json::from_str(&criteria_json)
                    .map_err(|e| onefolder_model::ModelError::InvalidName(format!("the criteria are not JSON: {e}")))?;
                m.save_search(&name, &criteria, match_any)
            },
            |id| id,
        )
    }

    /// Every saved search, in id order: `{ id, name, criteria (JSON text), matchAny }`.
    #[napi(ts_return_type = "Promise<Array<{ id: string; name: string; criteria: string; matchAny: boolean }>>")]
    pub fn searches<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        self.model(env, |m| m.searches(), |s| to_js_json(&s.into_values().collect::<Vec<_>>()))
    }

    /// Deletes a saved search.
    #[napi]
    pub fn delete_search<'env>(&self, env: &'env Env, search_id: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(env, move |m| m.delete_search(&search_id), |()| ())
    }

    /// Every location, in id order.
    #[napi]
    pub fn locations<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Vec<Location>>> {
        self.model(env, |m| m.locations(), |locations| locations.into_values().map(Location::from).collect())
    }

    // ------------------------------------------------------------------ DataStorage

    /// Runs one method of OneFolder's `DataStorage` interface: `op` is its name, `args` the
    /// JSON array of its arguments (dates as ms). Resolves with the JSON of its answer in
    /// OneFolder's DTO shapes. `dist/data-storage.js` wraps this as a class.
    #[napi]
    pub fn storage<'env>(&self, env: &'env Env, op: String, args: String) -> napi::Result<PromiseRaw<'env, String>> {
        let model = self.shared.model();
        let local = self.shared.local.clone();
        promise(
            env,
            async move {
                let model = model?;
                tokio::task::spawn_blocking(move || local.call(&model, &op, &args)).await?
            },
            |json| json,
        )
    }

    // ------------------------------------------------------------------ whole library

    /// The canonical export of the library as JSON (equal on devices that have converged).
    #[napi]
    pub fn export<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, String>> {
        self.model(env, |m| m.export(), |export| export.to_json())
    }

    /// Imports an export (the JSON of `export()`, or a backup's): `"replace"` makes the
    /// library equal to it on every computer, `"merge"` adds and overwrites what it holds.
    #[napi]
    pub fn import<'env>(&self, env: &'env Env, json: String, mode: String) -> napi::Result<PromiseRaw<'env, ()>> {
        self.model(
            env,
            move |m| {
                let mode = match mode.as_str() {
                    "replace" => onefolder_model::ImportMode::Replace,
                    "merge" => onefolder_model::ImportMode::Merge,
                    other => {
                        return Err(onefolder_model::ModelError::InvalidName(format!(
                            "import mode {other:?}: use \"replace\" or \"merge\""
                        )));
                    }
                };
                let export = onefolder_model::Export::from_json(&json)
                    .map_err(|e| onefolder_model::ModelError::InvalidName(format!("not an export: {e}")))?;
                m.import(&export, mode)
            },
            |()| (),
        )
    }

    /// The sync state: device, library, engine, store, pending edits, peers, warnings about
    /// skipped files, failing passes (the core's `Status`, keys in camelCase).
    #[napi(ts_return_type = "Promise<object>")]
    pub fn status<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        self.model(env, |m| Ok(m.doc().status()), |status| to_js_json(&status))
    }

    // ------------------------------------------------------------------ sync

    /// One pass: writes own pending edits to the shared folder, then applies what the other
    /// devices wrote. Resolves with the pass's report (`flushed`, `ingest`).
    #[napi(ts_return_type = "Promise<object>")]
    pub fn sync_once<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, Value>> {
        let model = self.shared.model();
        promise(
            env,
            async move {
                let model = model?;
                Ok(model.doc().sync_once().await?)
            },
            |report| to_js_json(&report),
        )
    }

    /// Starts the sync loop in the background (debounced writes, change hints, polling).
    /// Rejects with `INVALID` if it runs already.
    #[napi]
    pub fn start_sync<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let shared = self.shared.clone();
        promise(
            env,
            async move {
                let replica = shared.model()?.doc().clone();
                let mut sync = shared.sync.lock().await;
                if sync.is_some() {
                    return Err(Failure::new(Code::Invalid, "the sync loop is running already"));
                }
                let (stop, stopped) = oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    replica
                        .run(async move {
                            let _ = stopped.await;
                        })
                        .await
                });
                *sync = Some(SyncLoop { stop, task });
                Ok(())
            },
            |()| (),
        )
    }

    /// Stops the sync loop; resolves after its final flush (at once if it was not running).
    #[napi]
    pub fn stop_sync<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let shared = self.shared.clone();
        promise(env, async move { shared.stop_sync().await }, |()| ())
    }

    /// Calls `callback` with every status event from now on (`{ event: "edited" | "flushed" |
    /// "applied" | "warning" | "new_device_id" | "error" | "lagged", ... }`); returns the
    /// listener's id for `offEvent`.
    #[napi(ts_args_type = "callback: (event: object) => void")]
    pub fn on_event(&self, env: &Env, callback: EventCallback) -> napi::Result<u32> {
        let model = self.shared.model().map_err(|f| f.into_napi(env))?;
        let mut events = model.doc().subscribe();
        let id = self.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        let task = napi::bindgen_prelude::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => to_js_json(&event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a JS event listener fell behind; events were dropped");
                        serde_json::json!({ "event": "lagged", "missed": missed })
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if callback.call(event, ThreadsafeFunctionCallMode::NonBlocking) == napi::Status::Closing {
                    break;
                }
            }
        });
        self.shared.listeners.lock().unwrap_or_else(|e| e.into_inner()).insert(id, task);
        Ok(id)
    }

    /// Stops calling the listener `id`; `false` if there is none.
    #[napi]
    pub fn off_event(&self, id: u32) -> bool {
        match self.shared.listeners.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Stops the sync loop (final flush), the event listeners, and closes the library: its
    /// local state is free for another `Library.open` once this resolves. Calls after it
    /// reject with `INVALID`.
    #[napi]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let shared = self.shared.clone();
        promise(
            env,
            async move {
                let stopped = shared.stop_sync().await;
                shared.stop_listeners();
                let taken = shared.model.write().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(mut model) = taken {
                    // Calls still in flight hold the model; the store is closed with the last.
                    loop {
                        match Arc::try_unwrap(model) {
                            Ok(model) => {
                                tokio::task::spawn_blocking(move || drop(model)).await?;
                                break;
                            }
                            Err(still_shared) => {
                                model = still_shared;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                }
                stopped
            },
            |()| (),
        )
    }
}
