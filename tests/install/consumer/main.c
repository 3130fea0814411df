/* Builds against an installed talon: creates an app, registers a route,
 * checks an error name, then runs it with the installed test client
 * (talon/test.h) and asks it for its route. */
#include <stdio.h>
#include <string.h>
#include <talon.h>
#include <talon/test.h>

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hi");
}

int main(void) {
  tl_app *app = tl_app_new(&(tl_app_config){.no_signal_handlers = 1});
  if (!app)
    return 1;
  int rc = tl_app_get(app, "/", hello);
  int dup = tl_app_get(app, "/", hello);
  if (rc != 0 || dup != TL_EEXIST || strcmp(tl_err_name(dup), "TL_EEXIST") != 0)
    return 2;
  tl_test *t;
  tl_test_response r;
  if (tl_test_start(&t, app, NULL) != 0)
    return 3;
  rc = tl_test_get(t, "/", &r);
  int ok = rc == 0 && r.status == 200 && strcmp(r.body, "hi") == 0;
  tl_test_response_free(&r);
  if (tl_test_stop(t) != 0 || !ok)
    return 4;
  tl_app_free(app);
  printf("talon ok\n");
  return 0;
}
