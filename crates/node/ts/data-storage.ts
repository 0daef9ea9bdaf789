// OneFolder's `DataStorage` (src/api/data-storage.ts in the OneFolder app) on a synced
// OneFolder Sync library: a drop-in for its IndexedDB backend, in the app's main process.
//
// Every method is one call into the addon (`Library.storage`), which runs it on the model in
// Rust and answers JSON in OneFolder's DTO shapes; this file only converts dates and keeps
// what the app last read of each file's tags, so that a save writes the user's change and not
// a stale array (see `saveFiles`).

import { sep } from 'node:path';

import type { Library, StatusEvent } from '../index';

/** An id. Tags, locations and searches keep the ids the app gives them; files get the
 * library's (derived from location and path, so two computers indexing one folder agree). */
export type ID = string;

/** The id of OneFolder's invisible root tag; its `subTags` are the top-level tags. */
export const ROOT_TAG_ID = 'root';

export enum OrderDirection {
  Asc = 0,
  Desc = 1,
}

export interface TagDTO {
  id: ID;
  name: string;
  dateAdded: Date;
  color: string;
  /** Child tag ids, in order. Saving a changed list moves and reorders tags in the tree. */
  subTags: ID[];
  impliedTags: ID[];
  copyImpliedTags: boolean;
  /** Whether files with this tag are hidden. */
  isHidden: boolean;
}

export interface FileDTO {
  id: ID;
  /** This computer's inode number of the file (never synced). */
  ino: string;
  locationId: ID;
  /** Path relative to the location. */
  relativePath: string;
  /** This computer's path (the location's path here + `relativePath`; never synced). */
  absolutePath: string;
  tags: ID[];
  dateAdded: Date;
  dateModified: Date;
  dateLastIndexed: Date;
  name: string;
  /** Lower case, without the dot. */
  extension: string;
  /** Size in bytes. */
  size: number;
  width: number;
  height: number;
  dateCreated: Date;
  annotations?: string;
}

export interface SubLocationDTO {
  name: string;
  isExcluded: boolean;
  subLocations: SubLocationDTO[];
  tags?: ID[];
}

export interface LocationDTO {
  id: ID;
  /** This computer's absolute path of the location (never synced; `""` while this computer
   * has not mapped a location another computer added outside the library folder). */
  path: string;
  dateAdded: Date;
  /** Only excluded sub-folders are stored (`isExcluded`), as a tree. */
  subLocations: SubLocationDTO[];
  tags?: ID[];
  index: number;
}

export type OrderBy<T> = { [K in keyof T]: K extends string ? K : never }[keyof T] | 'random';

export type ArrayOperatorType = 'contains' | 'notContains';
export type TagOperatorType = ArrayOperatorType | 'containsRecursively' | 'containsNotRecursively';
export type StringOperatorType =
  | 'equalsIgnoreCase'
  | 'equals'
  | 'notEqual'
  | 'startsWithIgnoreCase'
  | 'startsWith'
  | 'notStartsWith'
  | 'contains'
  | 'notContains';
export type NumberOperatorType =
  | 'equals'
  | 'notEqual'
  | 'smallerThan'
  | 'smallerThanOrEquals'
  | 'greaterThan'
  | 'greaterThanOrEquals';

/** One search condition on a file field. Dates compare by UTC day. */
export type ConditionDTO<T> =
  | { key: keyof T & string; valueType: 'array'; operator: TagOperatorType; value: ID[] }
  | { key: keyof T & string; valueType: 'string'; operator: StringOperatorType; value: string }
  | { key: keyof T & string; valueType: 'number'; operator: NumberOperatorType; value: number }
  | { key: keyof T & string; valueType: 'date'; operator: NumberOperatorType; value: Date };

export type SearchCriteria = ConditionDTO<FileDTO>;

export interface FileSearchDTO {
  id: ID;
  name: string;
  criteria: SearchCriteria[];
  matchAny?: boolean;
  index: number;
}

/** OneFolder's data layer. */
export interface DataStorage {
  fetchTags(): Promise<TagDTO[]>;
  fetchFiles(order: OrderBy<FileDTO>, fileOrder: OrderDirection): Promise<FileDTO[]>;
  fetchFilesByID(ids: ID[]): Promise<FileDTO[]>;
  fetchFilesByKey(key: keyof FileDTO, value: string | number | Date): Promise<FileDTO[]>;
  fetchLocations(): Promise<LocationDTO[]>;
  fetchSearches(): Promise<FileSearchDTO[]>;
  searchFiles(
    criteria: ConditionDTO<FileDTO> | [ConditionDTO<FileDTO>, ...ConditionDTO<FileDTO>[]],
    order: OrderBy<FileDTO>,
    fileOrder: OrderDirection,
    matchAny?: boolean,
  ): Promise<FileDTO[]>;
  createTag(tag: TagDTO): Promise<void>;
  createFilesFromPath(path: string, files: FileDTO[]): Promise<void>;
  createLocation(location: LocationDTO): Promise<void>;
  createSearch(search: FileSearchDTO): Promise<void>;
  saveTag(tag: TagDTO): Promise<void>;
  saveFiles(files: FileDTO[]): Promise<void>;
  saveLocation(location: LocationDTO): Promise<void>;
  saveSearch(search: FileSearchDTO): Promise<void>;
  removeTags(tags: ID[]): Promise<void>;
  mergeTags(tagToBeRemoved: ID, tagToMergeWith: ID): Promise<void>;
  removeFiles(files: ID[]): Promise<void>;
  removeLocation(location: ID): Promise<void>;
  removeSearch(search: ID): Promise<void>;
  countFiles(): Promise<[fileCount: number, untaggedFileCount: number]>;
  clear(): Promise<void>;
}

export interface SyncBackendOptions {
  /** Called after every edit this backend made (as OneFolder's `notifyChange`, e.g. to
   * schedule a backup). */
  onChange?: () => void;
  /** Called when edits of another computer were applied: refetch what is shown. */
  onRemoteChange?: (event: StatusEvent) => void;
}

type Wire<T> = { [K in keyof T]: T[K] extends Date ? number : T[K] };

const FILE_DATES = ['dateAdded', 'dateModified', 'dateLastIndexed', 'dateCreated'] as const;

function ms(value: Date | number | string | undefined | null): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return value;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : parsed;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

function wireCondition(c: ConditionDTO<FileDTO>): object {
  return c.valueType === 'date' ? { ...c, value: ms(c.value) } : c;
}

/** OneFolder's `DataStorage` on a OneFolder Sync `Library`. */
export class SyncBackend implements DataStorage {
  readonly #library: Library;
  readonly #options: SyncBackendOptions;
  /** The tags the app last read of each file: what a save compares with. */
  readonly #seenTags = new Map<ID, ID[]>();
  #listener: number | undefined;

  private constructor(library: Library, options: SyncBackendOptions) {
    this.#library = library;
    this.#options = options;
  }

  /** The backend on an open library (`Library.create`, `join` or `open`). */
  static async init(library: Library, options: SyncBackendOptions = {}): Promise<SyncBackend> {
    const backend = new SyncBackend(library, options);
    const onRemote = options.onRemoteChange;
    if (onRemote) {
      backend.#listener = library.onEvent((event) => {
        if (event.event === 'applied') onRemote(event);
      });
    }
    return backend;
  }

  /** Stops the `onRemoteChange` listener (the library stays open). */
  dispose(): void {
    if (this.#listener !== undefined) this.#library.offEvent(this.#listener);
    this.#listener = undefined;
  }

  async #call<T>(op: string, ...args: unknown[]): Promise<T> {
    return JSON.parse(await this.#library.storage(op, JSON.stringify(args))) as T;
  }

  async #edit(op: string, ...args: unknown[]): Promise<void> {
    await this.#call<null>(op, ...args);
    this.#options.onChange?.();
  }

  /** Files as the addon answers them: `absolutePath` is this computer's path of the location
   * (one per location in `prefixes`) + the relative path. */
  #files(answer: { prefixes: Record<ID, string>; files: Omit<Wire<FileDTO>, 'absolutePath'>[] }): FileDTO[] {
    const { prefixes } = answer;
    const files = answer.files as unknown as Record<string, unknown>[];
    for (const f of files) {
      for (const key of FILE_DATES) f[key] = new Date(f[key] as number);
      const prefix = prefixes[f.locationId as ID];
      const rel = f.relativePath as string;
      f.absolutePath = prefix === undefined ? '' : prefix + (sep === '/' ? rel : rel.split('/').join(sep));
      this.#seenTags.set(f.id as ID, f.tags as ID[]);
    }
    return files as unknown as FileDTO[];
  }

  #wireFile(f: FileDTO): object {
    return {
      ...f,
      dateAdded: ms(f.dateAdded),
      dateModified: ms(f.dateModified),
      dateLastIndexed: ms(f.dateLastIndexed),
      dateCreated: ms(f.dateCreated),
      base: this.#seenTags.get(f.id),
    };
  }

  async fetchTags(): Promise<TagDTO[]> {
    const tags = await this.#call<Wire<TagDTO>[]>('fetchTags');
    return tags.map((t) => ({ ...t, dateAdded: new Date(t.dateAdded) }));
  }

  async fetchFiles(order: OrderBy<FileDTO>, fileOrder: OrderDirection): Promise<FileDTO[]> {
    const files = this.#files(await this.#call('fetchFiles', order, fileOrder));
    return order === 'random' ? shuffle(files) : files;
  }

  async fetchFilesByID(ids: ID[]): Promise<FileDTO[]> {
    return this.#files(await this.#call('fetchFilesByID', ids));
  }

  async fetchFilesByKey(key: keyof FileDTO, value: string | number | Date): Promise<FileDTO[]> {
    return this.#files(await this.#call('fetchFilesByKey', key, value instanceof Date ? value.getTime() : value));
  }

  async fetchLocations(): Promise<LocationDTO[]> {
    const locations = await this.#call<Wire<LocationDTO>[]>('fetchLocations');
    return locations.map((l) => ({ ...l, dateAdded: new Date(l.dateAdded) }));
  }

  async fetchSearches(): Promise<FileSearchDTO[]> {
    const searches = await this.#call<FileSearchDTO[]>('fetchSearches');
    for (const s of searches) {
      s.criteria = s.criteria.map((c) =>
        c.valueType === 'date' ? { ...c, value: new Date(c.value as unknown as number) } : c,
      );
    }
    return searches;
  }

  async searchFiles(
    criteria: ConditionDTO<FileDTO> | [ConditionDTO<FileDTO>, ...ConditionDTO<FileDTO>[]],
    order: OrderBy<FileDTO>,
    fileOrder: OrderDirection,
    matchAny?: boolean,
  ): Promise<FileDTO[]> {
    const list = Array.isArray(criteria) ? criteria : [criteria];
    const wire = list.map(wireCondition);
    const files = this.#files(await this.#call('searchFiles', wire, order, fileOrder, matchAny ?? false));
    return order === 'random' ? shuffle(files) : files;
  }

  /** Creates the tag with the app's id at the root, then places its `subTags` under it. A
   * sibling of the same name is refused (code `INVALID`); the root tag exists always. */
  async createTag(tag: TagDTO): Promise<void> {
    await this.#edit('createTag', { ...tag, dateAdded: ms(tag.dateAdded) });
  }

  /** Adds the files that are not in the library yet (by location and relative path). The
   * library gives them their ids: read them back with a fetch. */
  async createFilesFromPath(path: string, files: FileDTO[]): Promise<void> {
    await this.#edit('createFilesFromPath', path, files.map((f) => this.#wireFile(f)));
  }

  /** Adds a location. One inside the library folder is known by the id derived from its
   * path on every computer; the app's id keeps working for this session. */
  async createLocation(location: LocationDTO): Promise<void> {
    await this.#edit('createLocation', { ...location, dateAdded: ms(location.dateAdded) });
  }

  async createSearch(search: FileSearchDTO): Promise<void> {
    await this.#edit('createSearch', { ...search, criteria: search.criteria.map(wireCondition) });
  }

  /** Writes what changed: name, colour, hidden, implied tags, and `subTags` as tree moves
   * and order changes (a tag dropped from the list stays until another tag lists it). */
  async saveTag(tag: TagDTO): Promise<void> {
    await this.#edit('saveTag', { ...tag, dateAdded: ms(tag.dateAdded) });
  }

  /** Saves files: facts, annotations, and the tags the user added or removed since the app
   * read the file, so a tag another computer assigned meanwhile stays. */
  async saveFiles(files: FileDTO[]): Promise<void> {
    await this.#edit('saveFiles', files.map((f) => this.#wireFile(f)));
    for (const f of files) this.#seenTags.set(f.id, [...f.tags]);
  }

  async saveLocation(location: LocationDTO): Promise<void> {
    await this.#edit('saveLocation', { ...location, dateAdded: ms(location.dateAdded) });
  }

  async saveSearch(search: FileSearchDTO): Promise<void> {
    await this.#edit('saveSearch', { ...search, criteria: search.criteria.map(wireCondition) });
  }

  /** Removes the tags (with their subtrees) from the library and from every file. */
  async removeTags(tags: ID[]): Promise<void> {
    await this.#edit('removeTags', tags);
  }

  /** Every file tagged `tagToBeRemoved` gets `tagToMergeWith`; then `tagToBeRemoved` goes. */
  async mergeTags(tagToBeRemoved: ID, tagToMergeWith: ID): Promise<void> {
    await this.#edit('mergeTags', tagToBeRemoved, tagToMergeWith);
  }

  async removeFiles(files: ID[]): Promise<void> {
    await this.#edit('removeFiles', files);
    for (const id of files) this.#seenTags.delete(id);
  }

  /** Removes the location and its files. */
  async removeLocation(location: ID): Promise<void> {
    await this.#edit('removeLocation', location);
  }

  async removeSearch(search: ID): Promise<void> {
    await this.#edit('removeSearch', search);
  }

  async countFiles(): Promise<[fileCount: number, untaggedFileCount: number]> {
    return this.#call<[number, number]>('countFiles');
  }

  /** Removes every file, tag, location and search — on every computer of the library, as
   * edits that sync (a restore of the empty library). */
  async clear(): Promise<void> {
    await this.#edit('clear');
    this.#seenTags.clear();
  }
}
