/* jsonx: the few cJSON accessors the store records need (missing or mistyped fields read as
 * "" or 0; setters replace the field). */
#ifndef FLEETFS_JSONX_H
#define FLEETFS_JSONX_H

#include <cjson/cJSON.h>
#include <stdbool.h>

const char *jx_str(const cJSON *o, const char *k);
double jx_num(const cJSON *o, const char *k);
bool jx_true(const cJSON *o, const char *k);
void jx_set_str(cJSON *o, const char *k, const char *v);
void jx_set_num(cJSON *o, const char *k, double v);
void jx_set_bool(cJSON *o, const char *k, bool v);

#endif
