/*
 * Archivist's AppImage type-2 runtime: the small ELF program at the front of
 * dist/Archivist-<version>-x86_64.AppImage (built by build-runtime.sh next to it).
 *
 * An AppImage of type 2 is this program with the bytes 'A' 'I' 0x02 at file offset 8
 * (the padding of the ELF identification, which the loader ignores), followed directly
 * by a SquashFS 4.0 image of the AppDir. The image starts where the program's ELF
 * ends: at e_shoff + e_shnum * e_shentsize, the end of the section header table,
 * which the linker writes last.
 *
 * What it does (run `X.AppImage --appimage-help`):
 *   X.AppImage [ARGS]                      extract and run (the default, below)
 *   --appimage-extract-and-run [ARGS]      the same, explicitly (APPIMAGE_EXTRACT_AND_RUN=1
 *                                          is accepted and means the same)
 *   --appimage-extract [PATTERN]           extract to ./squashfs-root (only the paths
 *                                          that match the fnmatch PATTERN, and all
 *                                          below a directory that matches)
 *   --appimage-offset                      print where the image starts
 *   --appimage-version, --appimage-help
 *
 * Extract and run is the default because FUSE (what the reference runtime mounts the
 * image with) is missing in containers, in CI and on many desktops, and a runtime
 * that mounts needs libfuse linked in. The image is extracted once into
 *   ${XDG_CACHE_HOME:-$HOME/.cache}/appimage-extract-and-run/<key>
 * where <key> is a 64-bit FNV-1a hash of the runtime's version, the superblock, the
 * image's size and offset and all its metadata (inode, directory, fragment and id
 * tables: every file's name, size, mode, mtime and compressed block sizes; 310 KB for
 * a 191 MB image of 15,000 files, hashed in a few milliseconds), so a second run of
 * the same image starts at once and a rebuilt image gets a new folder. Not every data
 * byte is hashed (that would read the whole image at each start): a rebuild that
 * changes a file's bytes but none of that metadata (same size, same mtime, same
 * compressed sizes, the superblock's time fixed too, as with SOURCE_DATE_EPOCH) would
 * reuse the old folder. Extraction goes into a temporary folder beside it that is
 * renamed into place only when complete: a killed extraction never leaves a half
 * folder that a later run would use (its leftover is removed by the next extraction of
 * the same image). Then AppRun is exec'd with the user's arguments (its exit status is
 * the AppImage's) and with APPIMAGE (the image's absolute path), APPDIR (the extracted
 * folder), ARGV0 (argv[0] as called) and OWD (the caller's working directory) in the
 * environment. TARGET_APPIMAGE=FILE makes the runtime read FILE instead of itself.
 *
 * The SquashFS reader is our own, a minimal reader of SquashFS 4.0 as mksquashfs
 * writes it: superblock, metadata blocks, inode and directory tables, fragment table,
 * data blocks (compressed, stored or sparse). Only zstd compression is read (the
 * build uses `mksquashfs -comp zstd`); other compressors give a clear error. Kept:
 * directories, regular files (streamed block by block, never whole in memory),
 * symlinks, permission bits and mtimes. Left out: owners (the image is built
 * -root-owned; files belong to the user who extracts), extended attributes, device
 * nodes, FIFOs and sockets (skipped with a warning), hard links (each name gets its
 * own copy), FUSE mounting.
 *
 * Licences: this file is part of Archivist. It links zstd's decompressor statically
 * (Debian's libzstd-dev libzstd.a, zstd 1.5.4, BSD-3-Clause, used under that licence
 * of its BSD-3-Clause or GPL-2.0 choice) and glibc dynamically (LGPL-2.1+, the
 * system's own). Nothing else.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#define RUNTIME_VERSION "1"
#define SQFS_MAGIC 0x73717368u
#define SQFS_COMP_ZSTD 6
#define META_SIZE 8192u
#define META_CACHE 16
#define NO_FRAGMENT 0xFFFFFFFFu
#define BLOCK_STORED (1u << 24)
#define CACHE_SUBDIR "appimage-extract-and-run"

enum {
    T_DIR = 1, T_FILE, T_SYMLINK, T_BLKDEV, T_CHRDEV, T_FIFO, T_SOCKET,
    T_XDIR, T_XFILE, T_XSYMLINK, T_XBLKDEV, T_XCHRDEV, T_XFIFO, T_XSOCKET
};

/* ------------------------------------------------------------------ errors */

static char *cleanup_dir; /* a temporary extraction folder to remove on a fatal error */
static void remove_tree(const char *path);

static void vmessage(const char *fmt, va_list ap)
{
    fputs("AppImage runtime: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

static void die(int status, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    if (cleanup_dir) {
        char *dir = cleanup_dir;
        cleanup_dir = NULL;
        remove_tree(dir);
    }
    exit(status);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(1, "out of memory (%zu bytes)", n);
    return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        die(1, "out of memory");
    va_end(ap);
    return s;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ------------------------------------------------------------------ the image */

struct meta_block {
    uint64_t pos;  /* where the block's header is, from the image start; UINT64_MAX: empty */
    uint64_t next; /* where the next block starts */
    uint32_t len;  /* uncompressed bytes */
    uint8_t data[META_SIZE];
};

struct image {
    const char *path;
    int fd;
    uint64_t offset; /* where the SquashFS starts in the file */
    uint64_t size;   /* bytes_used: the SquashFS's size */
    uint32_t block_size;
    uint32_t fragment_count;
    uint64_t root_ref, inode_table, dir_table, fragment_table;
    uint8_t super[96];
    uint64_t *fragment_index; /* where each metadata block of fragment entries is */
    ZSTD_DCtx *zstd;
    uint8_t *raw;  /* one block as stored (block_size bytes) */
    uint8_t *data; /* one data block decompressed */
    uint8_t *frag; /* the last fragment block decompressed */
    uint32_t frag_loaded, frag_len;
    struct meta_block meta[META_CACHE];
    unsigned meta_next;
};

struct cursor {
    uint64_t block; /* a metadata block's position */
    uint32_t off;   /* an offset in its uncompressed bytes */
};

static void corrupt(const struct image *img, const char *what) __attribute__((noreturn));
static void corrupt(const struct image *img, const char *what)
{
    die(1, "%s: the SquashFS image is corrupt or truncated (%s)", img->path, what);
}

/* n bytes at pos (from the SquashFS start); only inside the image. */
static void read_at(struct image *img, uint64_t pos, void *buf, size_t n)
{
    if (pos > img->size || n > img->size - pos)
        corrupt(img, "a read beyond the image's end");
    uint8_t *out = buf;
    while (n) {
        ssize_t got = pread(img->fd, out, n, (off_t)(img->offset + pos));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die(1, "%s: cannot read: %s", img->path, strerror(errno));
        if (got == 0)
            corrupt(img, "the file ends early");
        out += got;
        pos += (uint64_t)got;
        n -= (size_t)got;
    }
}

/* Decompress exactly `want` bytes (or up to `cap` when want is 0); returns the size. */
static size_t inflate_block(struct image *img, const uint8_t *src, size_t n, uint8_t *dst,
                            size_t cap, const char *what)
{
    size_t got = ZSTD_decompressDCtx(img->zstd, dst, cap, src, n);
    if (ZSTD_isError(got)) {
        char why[160];
        snprintf(why, sizeof why, "%s: zstd: %s", what, ZSTD_getErrorName(got));
        corrupt(img, why);
    }
    return got;
}

static const struct meta_block *meta_block(struct image *img, uint64_t pos)
{
    for (unsigned i = 0; i < META_CACHE; i++)
        if (img->meta[i].pos == pos)
            return &img->meta[i];
    struct meta_block *m = &img->meta[img->meta_next];
    img->meta_next = (img->meta_next + 1) % META_CACHE;
    m->pos = UINT64_MAX;
    uint8_t head[2];
    read_at(img, pos, head, 2);
    uint16_t h = le16(head);
    uint32_t n = h & 0x7FFFu;
    if (n == 0 || n > META_SIZE)
        corrupt(img, "a metadata block's size");
    read_at(img, pos + 2, img->raw, n);
    if (h & 0x8000u) {
        memcpy(m->data, img->raw, n);
        m->len = n;
    } else {
        m->len = (uint32_t)inflate_block(img, img->raw, n, m->data, META_SIZE, "metadata");
    }
    if (m->len == 0)
        corrupt(img, "an empty metadata block");
    m->next = pos + 2 + n;
    m->pos = pos;
    return m;
}

/* n bytes of metadata from the cursor on, across block ends. */
static void meta_read(struct image *img, struct cursor *c, void *dst, size_t n)
{
    uint8_t *out = dst;
    while (n) {
        const struct meta_block *m = meta_block(img, c->block);
        if (c->off >= m->len) {
            c->off -= m->len;
            c->block = m->next;
            continue;
        }
        size_t take = m->len - c->off;
        if (take > n)
            take = n;
        memcpy(out, m->data + c->off, take);
        out += take;
        n -= take;
        c->off += (uint32_t)take;
    }
}

static uint64_t elf_end(const char *path, int fd)
{
    Elf64_Ehdr eh;
    if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG))
        die(1, "%s: not an ELF executable, so not an AppImage", path);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64)
        die(1, "%s: not a 64-bit ELF executable", path);
    if (eh.e_shnum == 0)
        die(1, "%s: the runtime has no section headers, so where the image starts is unknown",
            path);
    return eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
}

static void open_image(struct image *img, const char *path)
{
    memset(img, 0, sizeof *img);
    img->path = path;
    img->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (img->fd < 0)
        die(1, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(img->fd, &st) < 0)
        die(1, "%s: %s", path, strerror(errno));
    img->offset = elf_end(path, img->fd);
    uint64_t available = (uint64_t)st.st_size > img->offset ? (uint64_t)st.st_size - img->offset : 0;
    if (available == 0)
        die(1, "%s: no SquashFS image is appended to this runtime (the file ends at offset %" PRIu64
            ", where the image should start)", path, img->offset);
    if (available < sizeof img->super ||
        pread(img->fd, img->super, sizeof img->super, (off_t)img->offset) != (ssize_t)sizeof img->super ||
        le32(img->super) != SQFS_MAGIC)
        die(1, "%s: no SquashFS image at offset %" PRIu64 " after the runtime: "
            "the AppImage is corrupt or the runtime was given no image", path, img->offset);
    const uint8_t *s = img->super;
    img->size = available; /* until bytes_used is checked, so read_at can bound it */
    img->block_size = le32(s + 12);
    img->fragment_count = le32(s + 16);
    uint16_t comp = le16(s + 20), block_log = le16(s + 22), major = le16(s + 28);
    uint64_t bytes_used = le64(s + 40);
    img->root_ref = le64(s + 32);
    img->inode_table = le64(s + 64);
    img->dir_table = le64(s + 72);
    img->fragment_table = le64(s + 80);
    if (major != 4)
        die(1, "%s: SquashFS version %u: only version 4 images are read", path, major);
    if (img->block_size < 4096 || img->block_size > (1u << 20) || block_log > 20 ||
        (1u << block_log) != img->block_size)
        corrupt(img, "the block size");
    if (comp != SQFS_COMP_ZSTD)
        die(1, "%s: the image uses SquashFS compressor %u; this runtime reads only zstd (6): "
            "build the image with `mksquashfs ... -comp zstd`", path, comp);
    if (bytes_used > available)
        die(1, "%s: the image is truncated: its superblock says %" PRIu64 " bytes, only %" PRIu64
            " follow the runtime", path, bytes_used, available);
    img->size = bytes_used;
    if (img->inode_table >= img->size || img->dir_table >= img->size ||
        img->dir_table < img->inode_table)
        corrupt(img, "the table positions in the superblock");
    img->zstd = ZSTD_createDCtx();
    if (!img->zstd)
        die(1, "out of memory (zstd)");
    img->raw = xmalloc(img->block_size > META_SIZE ? img->block_size : META_SIZE);
    img->data = xmalloc(img->block_size);
    img->frag = xmalloc(img->block_size);
    img->frag_loaded = NO_FRAGMENT;
    for (unsigned i = 0; i < META_CACHE; i++)
        img->meta[i].pos = UINT64_MAX;
    if (img->fragment_count) {
        uint64_t blocks = ((uint64_t)img->fragment_count * 16 + META_SIZE - 1) / META_SIZE;
        uint8_t *raw = xmalloc(blocks * 8);
        read_at(img, img->fragment_table, raw, blocks * 8);
        img->fragment_index = xmalloc(blocks * sizeof *img->fragment_index);
        for (uint64_t i = 0; i < blocks; i++)
            img->fragment_index[i] = le64(raw + 8 * i);
        free(raw);
    }
}

/* ------------------------------------------------------------------ inodes and directories */

struct inode {
    uint16_t type;
    mode_t mode;
    uint32_t mtime;
    /* directories */
    uint32_t dir_block, dir_size;
    uint16_t dir_off;
    /* files */
    uint64_t blocks_start, file_size;
    uint32_t fragment, fragment_off;
    struct cursor block_sizes;
    /* symlinks */
    char *target;
};

static void read_inode(struct image *img, uint64_t ref, struct inode *ino)
{
    struct cursor c = {img->inode_table + (ref >> 16), (uint32_t)(ref & 0xFFFF)};
    uint8_t b[40];
    memset(ino, 0, sizeof *ino);
    meta_read(img, &c, b, 16);
    ino->type = le16(b);
    ino->mode = le16(b + 2) & 07777;
    ino->mtime = le32(b + 8);
    switch (ino->type) {
    case T_DIR:
        meta_read(img, &c, b, 16);
        ino->dir_block = le32(b);
        ino->dir_size = le16(b + 8);
        ino->dir_off = le16(b + 10);
        break;
    case T_XDIR:
        meta_read(img, &c, b, 24);
        ino->dir_size = le32(b + 4);
        ino->dir_block = le32(b + 8);
        ino->dir_off = le16(b + 18);
        break;
    case T_FILE:
        meta_read(img, &c, b, 16);
        ino->blocks_start = le32(b);
        ino->fragment = le32(b + 4);
        ino->fragment_off = le32(b + 8);
        ino->file_size = le32(b + 12);
        ino->block_sizes = c;
        break;
    case T_XFILE:
        meta_read(img, &c, b, 40);
        ino->blocks_start = le64(b);
        ino->file_size = le64(b + 8);
        ino->fragment = le32(b + 28);
        ino->fragment_off = le32(b + 32);
        ino->block_sizes = c;
        break;
    case T_SYMLINK:
    case T_XSYMLINK: {
        meta_read(img, &c, b, 8);
        uint32_t n = le32(b + 4);
        if (n == 0 || n > PATH_MAX)
            corrupt(img, "a symlink's length");
        ino->target = xmalloc(n + 1);
        meta_read(img, &c, ino->target, n);
        ino->target[n] = '\0';
        if (strlen(ino->target) != n)
            corrupt(img, "a symlink's target");
        break;
    }
    case T_BLKDEV: case T_CHRDEV: case T_FIFO: case T_SOCKET:
    case T_XBLKDEV: case T_XCHRDEV: case T_XFIFO: case T_XSOCKET:
        break;
    default:
        corrupt(img, "an inode's type");
    }
}

struct entry {
    char *name;
    uint64_t ref;
};

/* The entries of a directory (without . and ..); *count is set. */
static struct entry *read_dir(struct image *img, const struct inode *dir, size_t *count)
{
    size_t n = 0, cap = 16;
    struct entry *e = xmalloc(cap * sizeof *e);
    if (dir->dir_size < 3)
        corrupt(img, "a directory's size");
    uint64_t left = dir->dir_size - 3; /* the size counts . and .., which are not stored */
    struct cursor c = {img->dir_table + dir->dir_block, dir->dir_off};
    uint8_t b[12];
    while (left) {
        if (left < 12)
            corrupt(img, "a directory header");
        meta_read(img, &c, b, 12);
        left -= 12;
        uint32_t entries = le32(b) + 1, start = le32(b + 4);
        if (entries > 256)
            corrupt(img, "a directory header's count");
        for (uint32_t i = 0; i < entries; i++) {
            if (left < 8)
                corrupt(img, "a directory entry");
            meta_read(img, &c, b, 8);
            left -= 8;
            uint32_t len = (uint32_t)le16(b + 6) + 1;
            if (len > 256 || left < len)
                corrupt(img, "a directory entry's name");
            char *name = xmalloc(len + 1);
            meta_read(img, &c, name, len);
            name[len] = '\0';
            left -= len;
            if (strlen(name) != len || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
                corrupt(img, "a file name");
            if (n == cap)
                e = realloc(e, (cap *= 2) * sizeof *e);
            if (!e)
                die(1, "out of memory");
            e[n].name = name;
            e[n].ref = (uint64_t)start << 16 | le16(b);
            n++;
        }
    }
    *count = n;
    return e;
}

/* ------------------------------------------------------------------ file data */

static void write_all(int fd, const void *buf, size_t n, const char *path)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t put = write(fd, p, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            die(1, "cannot write %s: %s", path, strerror(errno));
        p += put;
        n -= (size_t)put;
    }
}

static void load_fragment(struct image *img, uint32_t index)
{
    if (img->frag_loaded == index)
        return;
    if (index >= img->fragment_count)
        corrupt(img, "a fragment number");
    uint64_t at = (uint64_t)index * 16;
    struct cursor c = {img->fragment_index[at / META_SIZE], (uint32_t)(at % META_SIZE)};
    uint8_t b[16];
    meta_read(img, &c, b, 16);
    uint64_t start = le64(b);
    uint32_t word = le32(b + 8), n = word & 0xFFFFFFu;
    if (n == 0 || n > img->block_size)
        corrupt(img, "a fragment's size");
    read_at(img, start, img->raw, n);
    if (word & BLOCK_STORED) {
        memcpy(img->frag, img->raw, n);
        img->frag_len = n;
    } else {
        img->frag_len = (uint32_t)inflate_block(img, img->raw, n, img->frag, img->block_size,
                                                "a fragment block");
    }
    img->frag_loaded = index;
}

/* Write a regular file's contents to fd, one block at a time. */
static void copy_file(struct image *img, const struct inode *ino, int fd, const char *path)
{
    uint64_t bs = img->block_size, size = ino->file_size;
    uint64_t blocks = ino->fragment == NO_FRAGMENT ? (size + bs - 1) / bs : size / bs;
    uint64_t pos = ino->blocks_start;
    struct cursor c = ino->block_sizes;
    for (uint64_t i = 0; i < blocks; i++) {
        uint8_t b[4];
        meta_read(img, &c, b, 4);
        uint32_t word = le32(b), n = word & 0xFFFFFFu;
        size_t want = (size_t)(size - i * bs < bs ? size - i * bs : bs);
        if (n > bs)
            corrupt(img, "a data block's size");
        if (n == 0) { /* sparse: zeros */
            memset(img->data, 0, want);
        } else {
            read_at(img, pos, img->raw, n);
            pos += n;
            if (word & BLOCK_STORED) {
                if (n != want)
                    corrupt(img, "a stored data block's size");
                memcpy(img->data, img->raw, n);
            } else if (inflate_block(img, img->raw, n, img->data, bs, "a data block") != want) {
                corrupt(img, "a data block's uncompressed size");
            }
        }
        write_all(fd, img->data, want, path);
    }
    uint64_t tail = size > blocks * bs ? size - blocks * bs : 0; /* what is in a fragment */
    if (tail) {
        if (ino->fragment == NO_FRAGMENT)
            corrupt(img, "a file's size");
        load_fragment(img, ino->fragment);
        if (ino->fragment_off > img->frag_len || tail > img->frag_len - ino->fragment_off)
            corrupt(img, "a file's place in its fragment");
        write_all(fd, img->frag + ino->fragment_off, (size_t)tail, path);
    }
}

/* ------------------------------------------------------------------ extraction */

struct extraction {
    struct image *img;
    int root_fd;          /* the output folder */
    const char *root;     /* its name, for messages */
    const char *pattern;  /* NULL: everything */
    unsigned long count;  /* entries written */
};

static void set_times(int dirfd, const char *name, int fd, uint32_t mtime, const char *path)
{
    struct timespec t[2] = {{(time_t)mtime, 0}, {(time_t)mtime, 0}};
    int rc = fd >= 0 ? futimens(fd, t) : utimensat(dirfd, name, t, AT_SYMLINK_NOFOLLOW);
    if (rc < 0)
        warn("cannot set the time of %s: %s", path, strerror(errno));
}

/* The folder rel (below the output root), made with its parents when missing; never
 * through a symlink. Returns an open descriptor. */
static int open_dir_path(struct extraction *x, const char *rel)
{
    int fd = dup(x->root_fd);
    if (fd < 0)
        die(1, "%s: %s", x->root, strerror(errno));
    char *copy = strdup(rel), *save = NULL;
    if (!copy)
        die(1, "out of memory");
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (mkdirat(fd, part, 0700) < 0 && errno != EEXIST)
            die(1, "cannot create %s/%s: %s", x->root, rel, strerror(errno));
        int next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            die(1, "cannot open %s/%s: %s", x->root, rel, strerror(errno));
        close(fd);
        fd = next;
    }
    free(copy);
    return fd;
}

static void remove_existing(int dirfd, const char *name, const char *path)
{
    if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
        die(1, "cannot replace %s: %s", path, strerror(errno));
}

static void extract_leaf(struct extraction *x, int dirfd, const char *name, const char *path,
                         const struct inode *ino)
{
    struct image *img = x->img;
    if (ino->type == T_FILE || ino->type == T_XFILE) {
        remove_existing(dirfd, name, path);
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            die(1, "cannot create %s/%s: %s", x->root, path, strerror(errno));
        copy_file(img, ino, fd, path);
        if (fchmod(fd, ino->mode) < 0)
            die(1, "cannot set the mode of %s/%s: %s", x->root, path, strerror(errno));
        set_times(dirfd, name, fd, ino->mtime, path);
        if (close(fd) < 0)
            die(1, "cannot write %s/%s: %s", x->root, path, strerror(errno));
    } else if (ino->type == T_SYMLINK || ino->type == T_XSYMLINK) {
        remove_existing(dirfd, name, path);
        if (symlinkat(ino->target, dirfd, name) < 0)
            die(1, "cannot create the symlink %s/%s: %s", x->root, path, strerror(errno));
        set_times(dirfd, name, -1, ino->mtime, path);
    } else {
        warn("skipped %s: device nodes, FIFOs and sockets are not extracted", path);
        return;
    }
    x->count++;
}

/* Extract the directory `dir` (at rel, "" for the root; fd open on it, or -1 when it is
 * not made yet). Returns its descriptor when it exists in the output, else -1. */
static int extract_dir(struct extraction *x, const struct inode *dir, const char *rel, int fd,
                       const char *pattern)
{
    size_t n;
    struct entry *entries = read_dir(x->img, dir, &n);
    for (size_t i = 0; i < n; i++) {
        char *path = *rel ? xasprintf("%s/%s", rel, entries[i].name) : xasprintf("%s", entries[i].name);
        struct inode ino;
        read_inode(x->img, entries[i].ref, &ino);
        int wanted = !pattern || fnmatch(pattern, path, 0) == 0;
        if (ino.type == T_DIR || ino.type == T_XDIR) {
            int child = -1;
            if (wanted) {
                if (fd < 0)
                    fd = open_dir_path(x, rel);
                if (mkdirat(fd, entries[i].name, 0700) < 0 && errno != EEXIST)
                    die(1, "cannot create %s/%s: %s", x->root, path, strerror(errno));
                child = openat(fd, entries[i].name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0)
                    die(1, "cannot open %s/%s: %s", x->root, path, strerror(errno));
                x->count++;
            }
            child = extract_dir(x, &ino, path, child, wanted ? NULL : pattern);
            if (child >= 0) {
                if (fchmod(child, ino.mode) < 0)
                    die(1, "cannot set the mode of %s/%s: %s", x->root, path, strerror(errno));
                set_times(-1, NULL, child, ino.mtime, path);
                close(child);
            }
        } else if (wanted) {
            if (fd < 0)
                fd = open_dir_path(x, rel);
            extract_leaf(x, fd, entries[i].name, path, &ino);
        }
        free(ino.target);
        free(path);
        free(entries[i].name);
    }
    free(entries);
    if (fd < 0 && pattern && *rel) /* made by open_dir_path for a match further down? */
        fd = openat(x->root_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* Extract the whole image (or what matches pattern) into the folder `root`, made if missing. */
static unsigned long extract(struct image *img, const char *root, const char *pattern)
{
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        die(1, "cannot create %s: %s", root, strerror(errno));
    struct extraction x = {img, -1, root, pattern, 0};
    x.root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x.root_fd < 0)
        die(1, "cannot open %s: %s", root, strerror(errno));
    struct inode top;
    read_inode(img, img->root_ref, &top);
    if (top.type != T_DIR && top.type != T_XDIR)
        corrupt(img, "the root is not a directory");
    int fd = extract_dir(&x, &top, "", dup(x.root_fd), pattern);
    if (fd >= 0) {
        if (fchmod(fd, top.mode | 0700) < 0)
            die(1, "cannot set the mode of %s: %s", root, strerror(errno));
        close(fd);
    }
    close(x.root_fd);
    return x.count;
}

/* ------------------------------------------------------------------ the cache */

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static int open_up(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_D)
        chmod(path, (st->st_mode & 07777) | 0700);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, open_up, 32, FTW_PHYS);               /* read-only folders: make them writable */
    nftw(path, remove_one, 32, FTW_PHYS | FTW_DEPTH); /* then remove children first */
}

static void mkdir_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        int err = errno;
        *p = '/';
        if (rc < 0 && err != EEXIST)
            die(1, "cannot create the extraction cache %s: %s "
                "(set XDG_CACHE_HOME to a writable folder)", path, strerror(err));
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        die(1, "cannot create the extraction cache %s: %s "
            "(set XDG_CACHE_HOME to a writable folder)", path, strerror(errno));
}

static char *cache_root(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/')
        return xasprintf("%s/" CACHE_SUBDIR, xdg);
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || !*home)
        die(1, "no cache folder: set HOME or XDG_CACHE_HOME");
    return xasprintf("%s/.cache/" CACHE_SUBDIR, home);
}

/* FNV-1a over the runtime's version, the superblock, size, offset and all metadata from
 * the inode table on. */
static uint64_t image_key(struct image *img)
{
    uint64_t h = 0xcbf29ce484222325ull;
#define MIX(ptr, len)                                   \
    do {                                                \
        const uint8_t *p_ = (const uint8_t *)(ptr);     \
        for (size_t i_ = 0; i_ < (len); i_++)           \
            h = (h ^ p_[i_]) * 0x100000001b3ull;        \
    } while (0)
    MIX(RUNTIME_VERSION, sizeof RUNTIME_VERSION); /* a new runtime may extract differently */
    MIX(img->super, sizeof img->super);
    MIX(&img->size, sizeof img->size);
    MIX(&img->offset, sizeof img->offset);
    uint8_t buf[65536];
    for (uint64_t pos = img->inode_table; pos < img->size;) {
        size_t n = img->size - pos < sizeof buf ? (size_t)(img->size - pos) : sizeof buf;
        read_at(img, pos, buf, n);
        MIX(buf, n);
        pos += n;
    }
#undef MIX
    return h;
}

/* Leftovers of extractions of this image that were killed (their process is gone). */
static void remove_stale(const char *root, const char *prefix)
{
    DIR *d = opendir(root);
    if (!d)
        return;
    size_t plen = strlen(prefix);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, plen))
            continue;
        long pid = strtol(e->d_name + plen, NULL, 10);
        if (pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            char *path = xasprintf("%s/%s", root, e->d_name);
            remove_tree(path);
            free(path);
        }
    }
    closedir(d);
}

/* The extracted folder of this image, extracting it when it is not cached yet. */
static char *cached_appdir(struct image *img)
{
    char *root = cache_root();
    mkdir_parents(root);
    char key[17];
    snprintf(key, sizeof key, "%016" PRIx64, image_key(img));
    char *dir = xasprintf("%s/%s", root, key);
    struct stat st;
    if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return dir; /* only ever made by a rename of a complete extraction */
    char *prefix = xasprintf(".%s.tmp.", key);
    remove_stale(root, prefix);
    char *tmp = xasprintf("%s/%s%ld", root, prefix, (long)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0700) < 0)
        die(1, "cannot write to the extraction cache %s: %s "
            "(set XDG_CACHE_HOME to a writable folder)", root, strerror(errno));
    cleanup_dir = tmp;
    extract(img, tmp, NULL);
    if (rename(tmp, dir) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            die(1, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
        remove_tree(tmp); /* another run of the same image was quicker: use its folder */
    }
    cleanup_dir = NULL;
    free(tmp);
    free(prefix);
    free(root);
    return dir;
}

/* ------------------------------------------------------------------ main */

static void usage(const char *image)
{
    printf("%s: an AppImage (type 2) with Archivist's runtime %s.\n\n"
           "  %s [ARGS]                      run the application (extracted once into the\n"
           "      cache ${XDG_CACHE_HOME:-$HOME/.cache}/" CACHE_SUBDIR "/, then reused)\n"
           "  --appimage-extract-and-run [ARGS]  the same\n"
           "  --appimage-extract [PATTERN]   extract into ./squashfs-root (what matches the\n"
           "                                 shell PATTERN, e.g. '*.desktop', if given)\n"
           "  --appimage-offset              print where the SquashFS image starts\n"
           "  --appimage-version             print the runtime's version\n"
           "  --appimage-help                this help\n\n"
           "No FUSE is used: the image is never mounted. The application sees APPIMAGE,\n"
           "APPDIR, ARGV0 and OWD in its environment.\n",
           image, RUNTIME_VERSION, image);
}

static char *image_path(void)
{
    const char *target = getenv("TARGET_APPIMAGE");
    char *path = realpath(target && *target ? target : "/proc/self/exe", NULL);
    if (!path)
        die(1, "cannot find %s: %s", target && *target ? target : "this AppImage's file",
            strerror(errno));
    return path;
}

/* Whether the image has AppRun at its top: asked before extracting a gigabyte for nothing. */
static int has_apprun(struct image *img)
{
    struct inode top;
    size_t n;
    int found = 0;
    read_inode(img, img->root_ref, &top);
    if (top.type != T_DIR && top.type != T_XDIR)
        corrupt(img, "the root is not a directory");
    struct entry *e = read_dir(img, &top, &n);
    for (size_t i = 0; i < n; i++) {
        found |= !strcmp(e[i].name, "AppRun");
        free(e[i].name);
    }
    free(e);
    return found;
}

static int run(const char *path, char *argv0, int argc, char **args)
{
    struct image img;
    open_image(&img, path);
    if (!has_apprun(&img))
        die(127, "%s has no AppRun at its top: not an AppImage's AppDir", path);
    char *appdir = cached_appdir(&img);
    char *apprun = xasprintf("%s/AppRun", appdir);
    struct stat st;
    if (stat(apprun, &st) < 0)
        die(127, "%s has no AppRun at its top (%s: %s)", path, apprun, strerror(errno));
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = '\0';
    setenv("APPIMAGE", path, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv0, 1);
    setenv("OWD", cwd, 1);
    char **av = xmalloc(((size_t)argc + 2) * sizeof *av);
    av[0] = apprun;
    for (int i = 0; i < argc; i++)
        av[i + 1] = args[i];
    av[argc + 1] = NULL;
    close(img.fd);
    execv(apprun, av);
    die(errno == ENOENT ? 127 : 126, "cannot run %s: %s", apprun, strerror(errno));
}

int main(int argc, char **argv)
{
    char *path = image_path();
    char *argv0 = argc > 0 ? argv[0] : path;
    const char *opt = argc > 1 ? argv[1] : "";
    if (strncmp(opt, "--appimage-", 11) != 0)
        return run(path, argv0, argc > 1 ? argc - 1 : 0, argv + 1);
    if (!strcmp(opt, "--appimage-extract-and-run"))
        return run(path, argv0, argc - 2, argv + 2);
    if (!strcmp(opt, "--appimage-help")) {
        usage(argv0);
        return 0;
    }
    if (!strcmp(opt, "--appimage-version")) {
        printf("Archivist AppImage runtime %s (type 2, SquashFS zstd, extract and run)\n",
               RUNTIME_VERSION);
        return 0;
    }
    if (!strcmp(opt, "--appimage-offset")) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die(1, "cannot open %s: %s", path, strerror(errno));
        printf("%" PRIu64 "\n", elf_end(path, fd));
        return 0;
    }
    if (!strcmp(opt, "--appimage-extract")) {
        struct image img;
        open_image(&img, path);
        unsigned long n = extract(&img, "squashfs-root", argc > 2 ? argv[2] : NULL);
        fprintf(stderr, "squashfs-root: %lu entries extracted\n", n);
        return 0;
    }
    die(1, "%s is not an option of this runtime (no FUSE mounting here); "
        "see --appimage-help", opt);
}
