/* A stand-in for talon's request and response, for fuzzing middleware
 * parsers without a socket. It implements the part of the public API
 * (talon/http.h) that the body and cookies middleware use: headers, body,
 * request memory, locals, status, response headers, tl_res_text and finish
 * hooks. Link it instead of the talon core, with the middleware's own
 * object file. Every string and body is an exactly sized heap copy, so an
 * over-read by the code under test is caught by AddressSanitizer. */
#ifndef TALON_TESTS_FUZZ_FAKE_HTTP_H
#define TALON_TESTS_FUZZ_FAKE_HTTP_H

#include <stddef.h>

#include <talon.h>

/* A new request with no headers and an empty body. Aborts on out of
 * memory (a fuzz harness has nothing better to do). */
tl_req *fake_req_new(void);

/* Add a header line; `name` and `value[0..len)` are copied (the value is
 * NUL-terminated in the copy, so it ends at its first NUL for readers). */
void fake_req_add_header(tl_req *req, const char *name, const char *value,
                         size_t len);

/* Set the body to a copy of data[0..len). */
void fake_req_set_body(tl_req *req, const void *data, size_t len);

/* The response of `req`. */
tl_res *fake_req_res(tl_req *req);

/* Finish the exchange like talon does: finish hooks, then locals' free
 * functions, then request memory; `req` is gone afterwards. */
void fake_req_end(tl_req *req);

/* What the middleware answered, if anything: the status (0 if it did not
 * call tl_res_status) and whether tl_res_text/tl_res_send finished it. */
int fake_res_status(const tl_res *res);
int fake_res_finished(const tl_res *res);

/* The number of response headers named `name` and the i-th value. */
size_t fake_res_header_count(const tl_res *res, const char *name);
const char *fake_res_header_at(const tl_res *res, const char *name, size_t i);

#endif
