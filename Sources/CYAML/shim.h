// libyaml's event API (pkg-config "yaml-0.1").
#include <yaml.h>
