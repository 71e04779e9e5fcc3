std = "ngx_lua"
globals = { "kong" }
max_line_length = false
self = false  -- handler phases take `self` by Kong's convention
files["spec/"] = { std = "+busted", globals = { "kong", "ngx" } }
