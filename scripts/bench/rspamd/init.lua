-- The plugins need the helpers of global_functions (the stock rspamd.lua
-- would load them together with rules this benchmark does not want).
require "global_functions" ()
config['regexp'] = config['regexp'] or {}
rspamd_maps = rspamd_maps or {}
