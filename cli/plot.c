/*
 * cli/plot.c — `fedpress plot`: one metric of several runs, one curve per
 * run, written as SVG, PNG or PDF with PLplot (docs/plotting.md).
 *
 * The store is only read. Rounds that were not evaluated (NULL metric, NaN
 * here) are skipped and the evaluated ones joined; the byte axes count every
 * round, evaluated or not, because the bytes were sent either way.
 *
 * PLplot keeps one global stream and calls exit() on a fatal error, so this
 * module draws once per process, installs an exit handler that removes the
 * half-written temporary file, and checks beforehand everything it can
 * (device present, runs found, points to draw) so that the handler is only
 * reached by I/O failures inside a driver. The file appears under its final
 * name only when complete (temporary file in the same directory + rename).
 */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <plplot.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.h"
#include "../store/store.h"
#include "args.h"
#include "cli.h"

#define FP_PLOT_EXIT_RUNTIME 1
#define FP_PLOT_EXIT_USAGE   2

#define FP_PLOT_WIDTH  800 /* pixels (PNG) or points (SVG, PDF) */
#define FP_PLOT_HEIGHT 600
#define FP_PLOT_MB     1e6 /* SI megabyte, as fp_format_bytes and the docs use */
/* Above this many points in the largest series the markers only add clutter. */
#define FP_PLOT_MAX_MARKED 50

static const char fp__plot_usage[] =
    "usage: fedpress plot RUN... [--store PATH] [--metric M] [--x X] [--logx] [--logy]\n"
    "                     [-o FILE] [--title TEXT]\n"
    "  draw one curve per run (RUN is an id from `fedpress runs`) into FILE.\n"
    "  --store PATH  the run store (default runs.db); it must exist\n"
    "  --metric M    test_accuracy (default), test_loss or train_loss; rounds that\n"
    "                were not evaluated are skipped, the others joined\n"
    "  --x X         round (default), uplink_bytes or downlink_bytes; the byte axes\n"
    "                show the cumulative traffic up to and including the round, in MB\n"
    "  --logx        logarithmic x axis (points with x <= 0 are left out)\n"
    "  --logy        logarithmic y axis (points with y <= 0 are left out)\n"
    "  -o FILE       output, FILE ending in .svg (default plot.svg), .png or .pdf\n"
    "  --title TEXT  title (default \"<metric> vs <x>\")\n"
    "exit status: 0 written, 1 runtime error (store, run, nothing to plot), 2 usage error\n";

enum fp__metric { FP__TEST_ACCURACY, FP__TEST_LOSS, FP__TRAIN_LOSS };
enum fp__xaxis { FP__X_ROUND, FP__X_UPLINK, FP__X_DOWNLINK };

static const char *const fp__metric_names[] = {"test_accuracy", "test_loss", "train_loss"};
static const char *const fp__metric_labels[] = {"test accuracy", "test loss", "train loss"};
static const char *const fp__x_names[] = {"round", "uplink_bytes", "downlink_bytes"};
static const char *const fp__x_labels[] = {"round", "cumulative uplink (MB)",
                                           "cumulative downlink (MB)"};

/* Output format by file extension; the built-in svg driver writes text as
 * <text> elements (searchable, small) where svgcairo would write glyph
 * outlines. */
struct fp__format {
    const char *ext, *device, *package;
};
static const struct fp__format fp__formats[] = {
    {".svg", "svg", "libplplot17"},
    {".png", "pngcairo", "plplot-driver-cairo"},
    {".pdf", "pdfcairo", "plplot-driver-cairo"},
};

struct fp__series {
    int64_t id;
    char *name, *algorithm, *compressor; /* owned; compressor may be NULL */
    double *x, *y;                       /* owned; [n] */
    size_t n, cap;
    uint64_t cum_up, cum_down; /* running totals while the rounds are read */
    int found;
};

struct fp__plot {
    enum fp__metric metric;
    enum fp__xaxis xaxis;
    int logx, logy;
    struct fp__series *s;
    size_t ns;
};

/* The temporary file the PLplot exit handler removes; "" when none. */
static char fp__tmp_path[4096];

static int fp__plot_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "fedpress: plot: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'fedpress plot --help' for usage)\n");
    return FP_PLOT_EXIT_USAGE;
}

static int fp__pick(const char *v, const char *const *names, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!strcmp(v, names[k]))
            return (int)k;
    return -1;
}

/* The longest text PLplot draws, in its units: one per code point, two for
 * an escaped '#'. For the svg device its core converts a text into a static
 * buffer of 1024 code points with no bounds check (plcore.c: encode_unicode
 * into unicode_buffer_static): a longer one overflows it (the 1026-character
 * --title crash). Its cairo devices (png, pdf) build Pango markup in a
 * 5000-byte buffer and silently drop what comes past about 4950 bytes
 * (cairo.c: text_char_cairo, MAX_MARKUP_LEN), which a text of '&' (5 bytes of
 * markup each) reaches near 970; cairo's other text path (proc_str) draws
 * nothing at 500 or more. 499 is clear of all three, whatever the text. */
#define FP_PLOT_TEXT_MAX 499

/* The byte length of the UTF-8 sequence at s, or 0 if it is not one
 * (PLplot aborts the whole text on a malformed one). */
static size_t fp__utf8_len(const unsigned char *s)
{
    size_t n = s[0] < 0x80                    ? 1
               : s[0] >= 0xC2 && s[0] <= 0xDF ? 2
               : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
               : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* s's length in PLplot units (FP_PLOT_TEXT_MAX), or -1 if it is not valid
 * UTF-8. */
static long fp__plot_units(const char *s)
{
    long units = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = fp__utf8_len(p);
        if (!n)
            return -1;
        units += *p == '#' ? 2 : 1;
        p += n;
    }
    return units;
}

/* s's length in PLplot units as fp__plot_text_cap draws it (a byte that
 * is not UTF-8 as '?', one unit). */
static size_t fp__plot_drawn_units(const char *s)
{
    size_t units = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = fp__utf8_len(p);
        units += *p == '#' ? 2 : 1;
        p += n ? n : 1;
    }
    return units;
}

/* s as PLplot should get it: '#' (its escape character) doubled, a byte
 * that is not UTF-8 shown as '?', and at most max units: a longer s is cut
 * at a code point, never inside one, and ends in an ellipsis. Caller frees. */
static char *fp__plot_text_cap(const char *s, size_t max)
{
    static const char ellipsis[] = "\xE2\x80\xA6"; /* U+2026, one unit */
    size_t len = strlen(s);
    char *out = malloc(2 * len + sizeof ellipsis), *q = out;
    if (!out)
        return NULL;
    size_t units = 0, room = fp__plot_drawn_units(s) > max ? max - 1 : max; /* the ellipsis: one */
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = fp__utf8_len(p), u = *p == '#' ? 2 : 1;
        if (units + u > room) {
            memcpy(q, ellipsis, sizeof ellipsis - 1);
            q += sizeof ellipsis - 1;
            break;
        }
        if (!n) {
            *q++ = '?';
            p++;
        } else {
            if (*p == '#')
                *q++ = '#';
            memcpy(q, p, n);
            q += n;
            p += n;
        }
        units += u;
    }
    *q = '\0';
    return out;
}

static int fp__push(struct fp__series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx)
            return FP_ENOMEM;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny)
            return FP_ENOMEM;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static char *fp__dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* fp_store_list_runs callback: copies the names of the requested runs (the
 * strings are borrowed from SQLite only until we return). */
static int fp__plot_run_cb(void *u, const struct fp_run_info *r)
{
    struct fp__plot *p = u;
    for (size_t k = 0; k < p->ns; k++) {
        struct fp__series *s = &p->s[k];
        if (s->id != r->id)
            continue;
        s->name = fp__dup(r->name ? r->name : "?");
        s->algorithm = fp__dup(r->algorithm ? r->algorithm : "?");
        s->compressor = fp__dup(r->compressor);
        if (!s->name || !s->algorithm || (r->compressor && !s->compressor))
            return FP_ENOMEM;
        s->found = 1;
    }
    return 0;
}

struct fp__rounds_ctx {
    struct fp__plot *p;
    struct fp__series *s;
};

static int fp__plot_round_cb(void *u, const struct fp_round *r)
{
    struct fp__rounds_ctx *c = u;
    struct fp__series *s = c->s;
    /* Every round's traffic counts towards the cumulative total, including
     * rounds without evaluation, whose points are skipped below. */
    s->cum_up += r->uplink_bytes;
    s->cum_down += r->downlink_bytes;
    double y = c->p->metric == FP__TEST_ACCURACY ? r->test_accuracy
               : c->p->metric == FP__TEST_LOSS   ? r->test_loss
                                                 : r->train_loss;
    double x = c->p->xaxis == FP__X_ROUND    ? (double)r->round
               : c->p->xaxis == FP__X_UPLINK ? (double)s->cum_up / FP_PLOT_MB
                                             : (double)s->cum_down / FP_PLOT_MB;
    if (!isfinite(y) || (c->p->logx && !(x > 0)) || (c->p->logy && !(y > 0)))
        return 0;
    return fp__push(s, c->p->logx ? log10(x) : x, c->p->logy ? log10(y) : y);
}

/* [lo, hi] of v over all series, padded by frac of the span on each side;
 * a zero span is widened so the axis still has a scale. */
static void fp__range(const struct fp__plot *p, int want_x, double frac, double *lo, double *hi)
{
    double a = INFINITY, b = -INFINITY;
    for (size_t k = 0; k < p->ns; k++)
        for (size_t i = 0; i < p->s[k].n; i++) {
            double v = want_x ? p->s[k].x[i] : p->s[k].y[i];
            a = v < a ? v : a;
            b = v > b ? v : b;
        }
    double span = b - a;
    if (!(span > 0)) {
        span = fabs(a) > 0 ? fabs(a) * 0.1 : 1.0;
        a -= span / 2;
        b += span / 2;
        span = b - a;
    }
    *lo = a - frac * span;
    *hi = b + frac * span;
}

/* The legend goes in the corner of the plot box that covers no points
 * (first of top right, bottom right, top left, bottom left). If every
 * corner covers some, it goes outside, below the plot box, and the page
 * grows taller by *outside_px so the plot keeps its size: growing the y range
 * instead would put accuracy axes below zero. The legend's size is
 * estimated from the label lengths and the fixed page and font sizes; it
 * errs on the large side. Returns the corner, or -1 for outside. */
static PLINT fp__legend_place(const struct fp__plot *p, char *const *labels, double x0, double x1,
                              double y0, double y1, int *outside_px)
{
    static const PLINT corners[4] = {
        PL_POSITION_TOP | PL_POSITION_RIGHT, PL_POSITION_BOTTOM | PL_POSITION_RIGHT,
        PL_POSITION_TOP | PL_POSITION_LEFT, PL_POSITION_BOTTOM | PL_POSITION_LEFT};
    size_t longest = 0;
    for (size_t k = 0; k < p->ns; k++) {
        size_t n = strlen(labels[k]);
        longest = n > longest ? n : longest;
    }
    /* Fractions of the plot box (about 690 x 480 units): ~8.5 units per
     * character, ~27 per legend row, plus the line sample and margins. */
    double w = ((double)longest * 8.5 + 90) / 690, h = ((double)p->ns * 27 + 24) / 480;
    w = w > 1 ? 1 : w;
    h = h > 0.9 ? 0.9 : h;
    size_t best = 0, best_count = SIZE_MAX;
    for (size_t c = 0; c < 4; c++) {
        int right = corners[c] & PL_POSITION_RIGHT, top = corners[c] & PL_POSITION_TOP;
        size_t count = 0;
        for (size_t k = 0; k < p->ns; k++)
            for (size_t i = 0; i < p->s[k].n; i++) {
                double u = (p->s[k].x[i] - x0) / (x1 - x0);
                double v = (p->s[k].y[i] - y0) / (y1 - y0);
                int in_x = right ? u >= 1 - w : u <= w;
                int in_y = top ? v >= 1 - h : v <= h;
                count += in_x && in_y;
            }
        if (count < best_count) {
            best = c;
            best_count = count;
        }
    }
    *outside_px = 0;
    if (best_count > 0) {
        *outside_px = (int)((double)p->ns * 24 + 70); /* rows below the x label */
        return -1;
    }
    return corners[best];
}

/* PLplot's fatal-error hook: it exits with our return value afterwards. */
static int fp__plot_on_exit(PLCHAR_VECTOR msg)
{
    fprintf(stderr, "fedpress: plot: PLplot failed: %s\n", msg ? msg : "(no message)");
    if (fp__tmp_path[0])
        unlink(fp__tmp_path);
    return FP_PLOT_EXIT_RUNTIME;
}

static int fp__device_available(const char *dev)
{
    /* plgDevs fills caller-owned arrays of at most n entries (one kept for
     * the NULL terminator); the strings are PLplot's. */
    enum { max_devices = 128 };
    const char *menu[max_devices], *names[max_devices];
    const char **pm = menu, **pn = names;
    int n = max_devices;
    plgDevs(&pm, &pn, &n);
    for (int k = 0; k < n; k++)
        if (names[k] && !strcmp(names[k], dev))
            return 1;
    return 0;
}

/* Colour map 0: 0 background, 1 axes and text, 2 grid, then the curves
 * (Tableau 10: distinguishable, and readable on white). */
#define FP_COL_BG    0
#define FP_COL_FG    1
#define FP_COL_GRID  2
#define FP_COL_FIRST 3
#define FP_NCURVE    10
static const PLINT fp__cmap_r[] = {255, 0, 215, 31, 255, 44, 214, 148, 140, 227, 127, 188, 23};
static const PLINT fp__cmap_g[] = {255, 0, 215, 119, 127, 160, 39, 103, 86, 119, 127, 189, 190};
static const PLINT fp__cmap_b[] = {255, 0, 215, 180, 14, 44, 40, 189, 75, 194, 127, 34, 207};
/* PLplot's predefined styles: 1 solid, 2 short dashes, 3 long dashes,
 * 4 long dash short gap. Colour and style advance together but with
 * different periods, so every (colour, style) pair up to 20 runs differs. */
static const PLINT fp__styles[] = {1, 3, 2, 4};

/* Per-curve drawing attributes, also handed to pllegend. */
struct fp__legend {
    PLINT *opts, *cols, *styles, *textcols, *symnums;
    PLFLT *widths, *symscales;
    const char **syms;
};

static void fp__legend_free(struct fp__legend *l)
{
    free(l->syms);
    free(l->symscales);
    free(l->widths);
    free(l->symnums);
    free(l->textcols);
    free(l->styles);
    free(l->cols);
    free(l->opts);
}

static int fp__legend_alloc(struct fp__legend *l, size_t n, int markers)
{
    l->opts = calloc(n, sizeof *l->opts);
    l->cols = calloc(n, sizeof *l->cols);
    l->styles = calloc(n, sizeof *l->styles);
    l->textcols = calloc(n, sizeof *l->textcols);
    l->symnums = calloc(n, sizeof *l->symnums);
    l->widths = calloc(n, sizeof *l->widths);
    l->symscales = calloc(n, sizeof *l->symscales);
    l->syms = calloc(n, sizeof *l->syms);
    if (!l->opts || !l->cols || !l->styles || !l->textcols || !l->symnums || !l->widths ||
        !l->symscales || !l->syms) {
        fp__legend_free(l);
        return FP_ENOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        l->opts[k] = PL_LEGEND_LINE | (markers ? PL_LEGEND_SYMBOL : 0);
        l->cols[k] = FP_COL_FIRST + (PLINT)(k % FP_NCURVE);
        l->styles[k] = fp__styles[k % (sizeof fp__styles / sizeof *fp__styles)];
        l->textcols[k] = FP_COL_FG;
        l->symnums[k] = 1;
        l->widths[k] = 2.0;
        l->symscales[k] = 0.6;
        l->syms[k] = "\xe2\x97\x8f"; /* U+25CF black circle, UTF-8 */
    }
    return 0;
}

/* PLplot writes and closes the file itself and checks neither (svg:
 * fprintf; cairo: fwrite from its stream callback), so a full disk would
 * leave a cut-off plot behind an exit 0. It is handed this stream instead,
 * whose writes and close go through here, and the first error is kept. */
struct fp__out {
    int fd;
    int err; /* errno of the first failed write or close; 0 if none */
    int closed;
};

static ssize_t fp__out_write(void *cookie, const char *buf, size_t n)
{
    struct fp__out *o = cookie;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(o->fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (!o->err)
                o->err = w < 0 ? errno : EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static int fp__out_close(void *cookie)
{
    struct fp__out *o = cookie;
    if (close(o->fd) != 0 && !o->err)
        o->err = errno;
    o->closed = 1;
    return o->err ? -1 : 0;
}

/* Draws into fp__tmp_path. Returns FP_ENOMEM before touching PLplot,
 * FP_EIO with *werr = the errno when the file could not be written, or 0. */
static int fp__draw(const struct fp__plot *p, const char *title, const struct fp__format *f,
                    char *const *labels, int *werr)
{
    double x0, x1, y0, y1;
    fp__range(p, 1, 0.02, &x0, &x1);
    fp__range(p, 0, 0.05, &y0, &y1);
    size_t most = 0;
    for (size_t k = 0; k < p->ns; k++)
        most = p->s[k].n > most ? p->s[k].n : most;
    int markers = most <= FP_PLOT_MAX_MARKED;
    int outside_px;
    PLINT corner = fp__legend_place(p, labels, x0, x1, y0, y1, &outside_px);
    const PLINT page_h = FP_PLOT_HEIGHT + outside_px;
    struct fp__legend l;
    if (fp__legend_alloc(&l, p->ns, markers))
        return FP_ENOMEM;
    struct fp__out o = {.fd = open(fp__tmp_path, O_WRONLY | O_TRUNC | O_CLOEXEC)};
    if (o.fd < 0) {
        *werr = errno;
        fp__legend_free(&l);
        return FP_EIO;
    }
    FILE *fo = fopencookie(&o, "wb",
                           (cookie_io_functions_t){.write = fp__out_write, .close = fp__out_close});
    if (!fo) {
        close(o.fd);
        fp__legend_free(&l);
        return FP_ENOMEM;
    }

    plsdev(f->device);
    plsfnam(fp__tmp_path); /* for PLplot's messages; it writes to fo */
    plsfile(fo);
    plspage(0, 0, FP_PLOT_WIDTH, page_h, 0, 0);
    plscmap0(fp__cmap_r, fp__cmap_g, fp__cmap_b, (PLINT)(sizeof fp__cmap_r / sizeof *fp__cmap_r));
    plsexit(fp__plot_on_exit);
    plinit();
    pladv(0);
    /* PLplot sizes characters by the page's smaller side: a page grown for
     * the legend would enlarge them, so scale them back. */
    const PLINT small = page_h < FP_PLOT_WIDTH ? page_h : FP_PLOT_WIDTH;
    const PLFLT chr = 0.9 * FP_PLOT_HEIGHT / small;
    plschr(0, chr);
    /* The plot box keeps its size in page units when the page grows for a
     * legend below it. */
    const double fy = (double)FP_PLOT_HEIGHT / page_h, below = 1 - fy;
    plvpor(0.10, 0.96, below + 0.11 * fy, below + 0.91 * fy);
    plwind(x0, x1, y0, y1);

    char xopt[8] = "g", yopt[8] = "g";
    if (p->logx)
        strcat(xopt, "l");
    if (p->logy)
        strcat(yopt, "l");
    /* Rounds are integers: on a short run PLplot's automatic ticks would
     * land on 1.2, 1.4, ... */
    PLFLT xtick = 0;
    PLINT nxsub = 0;
    if (p->xaxis == FP__X_ROUND && !p->logx && x1 - x0 < 8) {
        xtick = 1;
        nxsub = 1;
    }
    plcol0(FP_COL_GRID);
    plwidth(0.5);
    plbox(xopt, xtick, nxsub, yopt, 0, 0);
    snprintf(xopt, sizeof xopt, "bcnst%s", p->logx ? "l" : "");
    snprintf(yopt, sizeof yopt, "bcnstv%s", p->logy ? "l" : "");
    plcol0(FP_COL_FG);
    plwidth(1.0);
    plbox(xopt, xtick, nxsub, yopt, 0, 0);
    pllab(fp__x_labels[p->xaxis], fp__metric_labels[p->metric], title);

    for (size_t k = 0; k < p->ns; k++) {
        const struct fp__series *s = &p->s[k];
        plcol0(l.cols[k]);
        pllsty(l.styles[k]);
        plwidth(l.widths[k]);
        if (s->n > 1)
            plline((PLINT)s->n, s->x, s->y);
        pllsty(1);
        /* A lone point would not show as a line. */
        if (markers || s->n == 1) {
            plschr(0, l.symscales[k]);
            plstring((PLINT)s->n, s->x, s->y, l.syms[k]);
            plschr(0, chr);
        }
    }

    PLFLT lw, lh;
    plwidth(1.0);
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             corner < 0 ? PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT | PL_POSITION_BOTTOM
                        : PL_POSITION_INSIDE | PL_POSITION_VIEWPORT | corner,
             corner < 0 ? 0.0 : 0.02, corner < 0 ? 0.14 : 0.03, 0.08, FP_COL_BG, FP_COL_FG, 1, 0, 0,
             (PLINT)p->ns, l.opts, 1.0, 0.85, 2.0, 0.0, l.textcols, (const char *const *)labels,
             NULL, NULL, NULL, NULL, l.cols, l.styles, l.widths, l.cols, l.symscales, l.symnums,
             l.syms);
    plend();
    fp__legend_free(&l);
    if (!o.closed) /* every driver fedpress uses closes it; in case one did not */
        fclose(fo);
    if (o.err) {
        *werr = o.err;
        return FP_EIO;
    }
    return 0;
}

/* Creates the temporary file next to out (so rename() is atomic) with the
 * permissions a plain fopen() would have given. */
static int fp__make_tmp(const char *out)
{
    const char *slash = strrchr(out, '/');
    int dlen = slash ? (int)(slash - out) + 1 : 0;
    int n = snprintf(fp__tmp_path, sizeof fp__tmp_path, "%.*s.fedpress-plot-XXXXXX", dlen, out);
    if (n < 0 || (size_t)n >= sizeof fp__tmp_path) {
        fprintf(stderr, "fedpress: plot: %s: path too long\n", out);
        fp__tmp_path[0] = '\0';
        return -1;
    }
    int fd = mkstemp(fp__tmp_path);
    if (fd < 0) {
        fprintf(stderr, "fedpress: plot: cannot write %s: %s\n", out, strerror(errno));
        fp__tmp_path[0] = '\0';
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    close(fd);
    return 0;
}

int fp_cli_plot(int argc, char **argv)
{
    const char *store_path = "runs.db", *out = "plot.svg", *title = NULL, *v;
    struct fp__plot p = {FP__TEST_ACCURACY, FP__X_ROUND, 0, 0, NULL, 0};
    char **labels = NULL, *title_text = NULL;
    struct fp_store *store = NULL;
    struct fp_error err = {0};
    int rc = FP_PLOT_EXIT_USAGE;

    p.s = calloc((size_t)argc, sizeof *p.s);
    if (!p.s)
        return FP_PLOT_EXIT_RUNTIME;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(fp__plot_usage, stdout);
            rc = 0;
            goto out;
        } else if (fp_cli_is_opt(argv[i], "--store")) {
            if (!(store_path = fp_cli_optval(argc, argv, &i, "--store")))
                goto missing;
        } else if (fp_cli_is_opt(argv[i], "--metric")) {
            int k;
            if (!(v = fp_cli_optval(argc, argv, &i, "--metric")))
                goto missing;
            if ((k = fp__pick(v, fp__metric_names, 3)) < 0) {
                fp__plot_usage_error("--metric '%s': expected test_accuracy, test_loss or "
                                     "train_loss",
                                     v);
                goto out;
            }
            p.metric = (enum fp__metric)k;
        } else if (fp_cli_is_opt(argv[i], "--x")) {
            int k;
            if (!(v = fp_cli_optval(argc, argv, &i, "--x")))
                goto missing;
            if ((k = fp__pick(v, fp__x_names, 3)) < 0) {
                fp__plot_usage_error("--x '%s': expected round, uplink_bytes or downlink_bytes", v);
                goto out;
            }
            p.xaxis = (enum fp__xaxis)k;
        } else if (fp_cli_is_opt(argv[i], "--output") || fp_cli_is_opt(argv[i], "-o")) {
            if (!(out = fp_cli_optval(argc, argv, &i, argv[i][1] == '-' ? "--output" : "-o")))
                goto missing;
        } else if (fp_cli_is_opt(argv[i], "--title")) {
            if (!(title = fp_cli_optval(argc, argv, &i, "--title")))
                goto missing;
            long units = fp__plot_units(title);
            if (units < 0) {
                fp__plot_usage_error("%s", "--title is not valid UTF-8");
                goto out;
            }
            if (units > FP_PLOT_TEXT_MAX) {
                char why[160];
                snprintf(why, sizeof why,
                         "--title is %ld characters long; PLplot draws at most %d (a '#' counts "
                         "twice)",
                         units, FP_PLOT_TEXT_MAX);
                fp__plot_usage_error("%s", why);
                goto out;
            }
        } else if (!strcmp(argv[i], "--logx")) {
            p.logx = 1;
        } else if (!strcmp(argv[i], "--logy")) {
            p.logy = 1;
        } else if (argv[i][0] == '-') {
            fp__plot_usage_error("unknown option '%s'", argv[i]);
            goto out;
        } else {
            long long id = fp_cli_run_id(argv[i]);
            if (id < 0) {
                fp__plot_usage_error("run '%s': expected a run id (see 'fedpress runs')", argv[i]);
                goto out;
            }
            for (size_t k = 0; k < p.ns; k++)
                if (p.s[k].id == id) {
                    fp__plot_usage_error("run %s given more than once", argv[i]);
                    goto out;
                }
            p.s[p.ns++].id = id;
        }
    }
    if (p.ns == 0) {
        fp__plot_usage_error("%s", "no run id given (see 'fedpress runs')");
        goto out;
    }

    const struct fp__format *fmt = NULL;
    size_t olen = strlen(out);
    for (size_t k = 0; k < sizeof fp__formats / sizeof *fp__formats; k++) {
        size_t elen = strlen(fp__formats[k].ext);
        if (olen > elen && !strcasecmp(out + olen - elen, fp__formats[k].ext))
            fmt = &fp__formats[k];
    }
    if (!fmt) {
        fp__plot_usage_error("-o '%s': the file name must end in .svg, .png or .pdf", out);
        goto out;
    }
    /* PLplot reads "%n" in a file name as a page number (familying). */
    if (strstr(out, "%n")) {
        fp__plot_usage_error("-o '%s': the file name must not contain '%%n'", out);
        goto out;
    }

    /* The plot is renamed onto -o: never onto the store or its files. */
    if (fp_store_check_output(store_path, out, &err)) {
        fp__plot_usage_error("-o: %s", err.msg);
        goto out;
    }

    rc = FP_PLOT_EXIT_RUNTIME;
    /* As for `runs` and `metrics`: a reading command never creates a store. */
    if (fp_cli_open_store(&store, store_path, FP_CLI_STORE_READ)) {
        store = NULL;
        goto out;
    }
    if (fp_store_list_runs(store, fp__plot_run_cb, &p, &err)) {
        fprintf(stderr, "fedpress: %s\n", err.msg[0] ? err.msg : "out of memory");
        goto out;
    }
    for (size_t k = 0; k < p.ns; k++)
        if (!p.s[k].found) {
            fprintf(stderr, "fedpress: plot: no run %lld in %s (see 'fedpress runs --store %s')\n",
                    (long long)p.s[k].id, store_path, store_path);
            goto out;
        }
    for (size_t k = 0; k < p.ns; k++) {
        struct fp__rounds_ctx c = {&p, &p.s[k]};
        if (fp_store_list_rounds(store, p.s[k].id, fp__plot_round_cb, &c, &err)) {
            fprintf(stderr, "fedpress: %s\n", err.msg[0] ? err.msg : "out of memory");
            goto out;
        }
        if (p.s[k].n == 0) {
            /* The usual cause: a loss-only dataset (quadratic) and the
             * default metric. */
            fprintf(stderr,
                    "fedpress: plot: run %lld '%s' has no rounds with %s to plot%s (see "
                    "'fedpress metrics %lld --store %s'%s)\n",
                    (long long)p.s[k].id, p.s[k].name, fp__metric_names[p.metric],
                    p.logx || p.logy ? " on a log scale" : "", (long long)p.s[k].id, store_path,
                    p.metric == FP__TEST_ACCURACY ? "; or try --metric test_loss" : "");
            goto out;
        }
    }
    fp_store_close(store);
    store = NULL;

    labels = calloc(p.ns, sizeof *labels);
    if (!labels)
        goto oom;
    for (size_t k = 0; k < p.ns; k++) {
        /* Names come from the store and can be anything: the name is cut
         * (with an ellipsis) so that the whole label fits PLplot's limit
         * and its "(algorithm + compressor)" stays whole. */
        const struct fp__series *s = &p.s[k];
        char tail[160];
        if (s->compressor)
            snprintf(tail, sizeof tail, " (%.60s + %.60s)", s->algorithm, s->compressor);
        else
            snprintf(tail, sizeof tail, " (%.60s)", s->algorithm);
        char *etail = fp__plot_text_cap(tail, sizeof tail);
        char *ename = fp__plot_text_cap(s->name, FP_PLOT_TEXT_MAX - fp__plot_drawn_units(tail));
        if (etail && ename && (labels[k] = malloc(strlen(ename) + strlen(etail) + 1)))
            sprintf(labels[k], "%s%s", ename, etail);
        free(etail);
        free(ename);
        if (!labels[k])
            goto oom;
    }
    if (title) {
        title_text = fp__plot_text_cap(title, FP_PLOT_TEXT_MAX);
    } else if ((title_text = malloc(64))) {
        snprintf(title_text, 64, "%s vs %s", fp__metric_names[p.metric], fp__x_names[p.xaxis]);
    }
    if (!title_text)
        goto oom;

    if (!fp__device_available(fmt->device)) {
        fprintf(stderr,
                "fedpress: plot: PLplot has no '%s' device for %s files (apt-get install %s)\n",
                fmt->device, fmt->ext, fmt->package);
        goto out;
    }
    if (fp__make_tmp(out))
        goto out;
    int werr = 0, drawn = fp__draw(&p, title_text, fmt, labels, &werr);
    if (drawn) {
        unlink(fp__tmp_path);
        if (drawn == FP_ENOMEM)
            goto oom;
        fprintf(stderr, "fedpress: plot: cannot write %s: %s (nothing written)\n", out,
                strerror(werr));
        goto out;
    }
    struct stat st;
    if (stat(fp__tmp_path, &st) != 0 || st.st_size == 0) {
        fprintf(stderr, "fedpress: plot: PLplot wrote nothing for %s\n", out);
        unlink(fp__tmp_path);
        goto out;
    }
    if (rename(fp__tmp_path, out) != 0) {
        fprintf(stderr, "fedpress: plot: cannot write %s: %s\n", out, strerror(errno));
        unlink(fp__tmp_path);
        goto out;
    }
    fp__tmp_path[0] = '\0';
    size_t points = 0;
    for (size_t k = 0; k < p.ns; k++)
        points += p.s[k].n;
    printf("wrote %s: %s vs %s, %zu run%s, %zu points\n", out, fp__metric_names[p.metric],
           fp__x_names[p.xaxis], p.ns, p.ns == 1 ? "" : "s", points);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "fedpress: plot: out of memory\n");
    rc = FP_PLOT_EXIT_RUNTIME;
    goto out;
missing:
    rc = fp__plot_usage_error("option '%s' needs a value", argv[argc - 1]);
out:
    if (store)
        fp_store_close(store);
    free(title_text);
    for (size_t k = 0; labels && k < p.ns; k++)
        free(labels[k]);
    free(labels);
    for (size_t k = 0; k < p.ns; k++) {
        free(p.s[k].name);
        free(p.s[k].algorithm);
        free(p.s[k].compressor);
        free(p.s[k].x);
        free(p.s[k].y);
    }
    free(p.s);
    return rc;
}
