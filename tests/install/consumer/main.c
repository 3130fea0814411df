/* Builds against an installed talon: creates an app, registers a route,
 * and checks an error name, without listening. */
#include <stdio.h>
#include <string.h>
#include <talon.h>

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hi");
}

int main(void) {
  tl_app *app = tl_app_new(NULL);
  if (!app)
    return 1;
  int rc = tl_app_get(app, "/", hello);
  int dup = tl_app_get(app, "/", hello);
  tl_app_free(app);
  if (rc != 0 || dup != TL_EEXIST || strcmp(tl_err_name(dup), "TL_EEXIST") != 0)
    return 2;
  printf("talon ok\n");
  return 0;
}
