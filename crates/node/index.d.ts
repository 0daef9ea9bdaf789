// Types of @onefolder/sync, the Node.js binding of OneFolder Sync (crates/node/src/lib.rs).
// Every method that reads or writes the library returns a Promise; the work runs on the
// addon's own threads, never on the JS thread. Dates are ms since the Unix epoch.

/** The `code` of every Error the binding throws or rejects with. */
export type ErrorCode =
  /** The state directory is held by another open Library or process. */
  | 'LOCKED'
  /** The folder holds no library (no onefolder_tags/library.json). */
  | 'NOT_A_LIBRARY'
  /** The library uses another engine than the one asked for. */
  | 'WRONG_ENGINE'
  /** Stored data (local state, library.json, engine data) is damaged. */
  | 'CORRUPT'
  /** No tag, file or location with this id. */
  | 'NOT_FOUND'
  /** An argument or an edit was rejected (name, path, option, closed library, ...). */
  | 'INVALID'
  /** The file system or the shared folder failed. */
  | 'IO'
  | 'OTHER';

/** An Error from the binding. */
export interface OneFolderError extends Error {
  code: ErrorCode;
}

export interface OpenOptions {
  /** The library folder the sync client shares; the database lives in `<folder>/onefolder_tags`. */
  folder: string;
  /** This device's local state, outside `folder`. */
  stateDir: string;
  /** This device's name as the other devices see it. */
  deviceName: string;
  /** `"yrs"` (default for create) or `"automerge"`; join/open take the library's when omitted. */
  engine?: 'yrs' | 'automerge';
  /** `"sqlite"` (default) or `"lmdb"`. */
  store?: 'sqlite' | 'lmdb';
  /** Where the database is shared: `"folder"` (default: `<folder>/onefolder_tags`, kept equal
   * by a sync client), `s3://BUCKET/PREFIX` or `webdav://HOST/PATH` (settings and secrets from
   * the environment variables the CLI's `--transport` reads). */
  transport?: string;
  /** Quiet time after the last edit before the sync loop writes (default 2000). */
  debounceMs?: number;
  /** How often the sync loop lists the shared folder without a change hint (default 30000). */
  pollIntervalMs?: number;
}

export interface Tag {
  id: string;
  name: string;
  color?: string;
  /** Effective parent tag id; absent for a root tag. */
  parent?: string;
  /** Fractional order key among siblings. */
  order: string;
  isHidden: boolean;
  dateAdded: number;
}

export interface File {
  id: string;
  /** Location id. */
  location: string;
  /** Location-relative path, `/` separators. */
  path: string;
  name: string;
  /** Lower-case, without the dot. */
  extension: string;
  size: number;
  width?: number;
  height?: number;
  dateAdded: number;
  dateModified: number;
  dateCreated: number;
  fingerprint?: string;
  annotations?: string;
  /** Ids of the existing tags assigned to it. */
  tags: string[];
}

/** What an indexer knows about a file on disk; numbers default to 0. */
export interface FileMeta {
  size?: number;
  dateModified?: number;
  dateCreated?: number;
  fingerprint?: string;
  width?: number;
  height?: number;
}

export interface Location {
  id: string;
  name: string;
  /** Relative to the library folder when inside it (`""` = the library folder). */
  relPath?: string;
  dateAdded: number;
  exclusions: string[];
}

/** A file in the shared folder that was skipped, and why; retried on every pass. */
export interface Warning {
  /** Device folder name. */
  folder: string;
  file: string | null;
  message: string;
}

export interface FlushInfo {
  seq: number;
  bytes: number;
  changes: number;
  atMs: number;
  snapshot: boolean;
}

export interface FailureInfo {
  attempts: number;
  message: string;
  sinceMs: number;
  retryInMs: number;
}

export interface PeerStatus {
  lastSeq: number;
  segments: number;
  lastAppliedMs: number;
}

export interface Status {
  device: string;
  library: string;
  engine: string;
  store: string;
  /** Acknowledged local edits not yet written to the shared folder. */
  pendingEdits: number;
  nextSeq: number;
  lastFlush: FlushInfo | null;
  /** By device id. */
  peers: Record<string, PeerStatus>;
  warnings: Warning[];
  unwrittenSeq: number | null;
  flushFailure: FailureInfo | null;
  ingestFailure: FailureInfo | null;
}

export interface SyncReport {
  flushed: FlushInfo | null;
  ingest: { applied: number; duplicates: number; skipped: number; reads: number };
}

export type StatusEvent =
  | { event: 'edited'; pending: number }
  | ({ event: 'flushed' } & FlushInfo)
  | { event: 'applied'; device: string; file: string; seq: number; bytes: number }
  | ({ event: 'warning' } & Warning)
  | { event: 'new_device_id'; old: string; new: string }
  | { event: 'error'; message: string }
  /** The listener fell behind and `missed` events were dropped (from the binding). */
  | { event: 'lagged'; missed: number };

export class Library {
  private constructor();
  /** Creates a library in `folder` (INVALID if it holds one) with new local state in `stateDir`. */
  static create(options: OpenOptions): Promise<Library>;
  /** Joins the library in `folder` (NOT_A_LIBRARY if there is none). */
  static join(options: OpenOptions): Promise<Library>;
  /** Opens local state set up before (LOCKED while another Library or process holds it). */
  static open(options: OpenOptions): Promise<Library>;

  /** Every tag, in id order. */
  tags(): Promise<Tag[]>;
  /** Creates a tag (or finds the one of that name there); resolves with its id. */
  createTag(name: string, parentId?: string | null, color?: string | null): Promise<string>;
  renameTag(tagId: string, name: string): Promise<void>;
  /** Deletes the tag and its subtree, and removes them from every file. */
  deleteTag(tagId: string): Promise<void>;
  /** Moves a tag under `parentId` (the root when null), after its last sibling there. */
  moveTag(tagId: string, parentId?: string | null): Promise<void>;
  /** Places a tag among its siblings between two of them (either may be null). */
  reorderTag(tagId: string, afterId?: string | null, beforeId?: string | null): Promise<void>;
  setTagColor(tagId: string, color?: string | null): Promise<void>;
  setTagHidden(tagId: string, hidden: boolean): Promise<void>;
  /** Every file tagged `fromId` gets `intoId`; `fromId`'s children move under it; `fromId` goes. */
  mergeTags(fromId: string, intoId: string): Promise<void>;

  /** Every file, in id order. */
  files(): Promise<File[]>;
  /** Files carrying the tag or, with `recursive`, it or a tag below it. */
  filesWithTag(tagId: string, recursive: boolean): Promise<File[]>;
  /** Adds or updates a file; resolves with its id. */
  upsertFile(locationId: string, relPath: string, meta?: FileMeta | null): Promise<string>;
  removeFile(fileId: string): Promise<void>;
  setAnnotations(fileId: string, text?: string | null): Promise<void>;
  /** Files with no (existing) tag, in id order. */
  untaggedFiles(): Promise<File[]>;
  fileCounts(): Promise<{ files: number; untagged: number }>;
  assign(fileId: string, tagId: string): Promise<void>;
  unassign(fileId: string, tagId: string): Promise<void>;

  /** Adds (or matches) a location; resolves with its id. */
  addLocation(name: string, relPath?: string | null): Promise<string>;
  locations(): Promise<Location[]>;
  /** Removes a location and every file in it. */
  removeLocation(locationId: string): Promise<void>;
  /** Excludes (or includes again) a location-relative sub-folder from indexing. */
  setExclusion(locationId: string, relPath: string, excluded: boolean): Promise<void>;

  /** Saves a search (OneFolder's criteria list as JSON text); resolves with its id. */
  saveSearch(name: string, criteriaJson: string, matchAny: boolean): Promise<string>;
  searches(): Promise<Array<{ id: string; name: string; criteria: string; matchAny: boolean }>>;
  deleteSearch(searchId: string): Promise<void>;

  /** Imports the JSON of `export()`: `"replace"` makes the library equal to it on every
   * computer; `"merge"` adds and overwrites what it holds. */
  import(json: string, mode: 'replace' | 'merge'): Promise<void>;

  /** One method of OneFolder's DataStorage by name, its arguments and answer as JSON (dates as
   * ms); `@onefolder/sync/data-storage` wraps it as the class `SyncBackend`. */
  storage(op: string, args: string): Promise<string>;

  /** The canonical export as JSON: equal on devices that have converged. */
  export(): Promise<string>;
  status(): Promise<Status>;

  /** One pass: write own pending edits, then apply what the other devices wrote. */
  syncOnce(): Promise<SyncReport>;
  /** Starts the sync loop in the background (INVALID if it runs already). */
  startSync(): Promise<void>;
  /** Stops the sync loop; resolves after its final flush. */
  stopSync(): Promise<void>;
  /** Calls `callback` with every event from now on; returns the listener id. */
  onEvent(callback: (event: StatusEvent) => void): number;
  /** Removes a listener; false if there is none. */
  offEvent(id: number): boolean;
  /** Stops the loop and listeners and closes the library; its state is free once this resolves. */
  close(): Promise<void>;
}
