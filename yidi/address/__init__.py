"""Delivery-address classification (requirement S1): remote / local / unknown, with GB/T 2260 codes.

A *remote* order is delivered outside Chongqing municipality, a *local* one inside it. The classifier
splits an address into province / city / district / detail, finds the administrative code of the most
specific level it is sure of, and says why when it is not sure.

Modules: ``classify`` (``classify_addresses``: a frame of addresses), ``reading`` (``classify_one``: one
address, the rules below), ``gazetteer`` (the division names from ``yidi/data/``, see ``yidi/data/README.md``),
``names`` (abbreviations, pinyin, foreign countries, platform fillers), ``messy`` (the slow path below).

Rules (the reasons, not only the what):
- Structured province/city/district fields from a platform beat parsing free text; text is parsed only
  for what the fields leave open, and leading admin names repeated in ``detail`` are stripped.
- Chongqing's districts and counties count as Chongqing without "重庆" (万州区, 酉阳, 秀山县 …).
- 江北区 and 渝北区 were merged into 两江新区 in 2025-11 (five northern 渝北 towns went to 北碚区 and
  five 北碚 towns/subdistricts to 两江新区). Old names are accepted, normalised and noted.
- A name shared by several divisions (江北区: 重庆/宁波; 朝阳区: 北京/长春; 鼓楼区 …) is never guessed
  without a province or city that decides it: region ``unknown`` with a note listing the candidates
  (so a reviewer decides; the spec wants these flagged even when every candidate is outside Chongqing).
- Foreign countries and Hong Kong / Macao / Taiwan are ``remote`` (cross-border: customs and a
  different carrier service), with a note. HK/MO/TW keep their GB/T 2260 codes (810000/820000/710000).
- Short forms of district names (南山 for 南山区) are only read inside a known province/city, except
  Chongqing's own (万州, 酉阳 …); short forms followed by 路/街/道/大道… are street names, not places.

- Messy writing is read on a slow path (``messy``), only for addresses the fast reading left without a
  district and whose text shows the sign: traditional characters (OpenCC), characters separated by spaces,
  one-character typos (only when the known province or city leaves exactly one candidate), Hong Kong / Macao
  localities, pinyin/English names (pypinyin over the division table). Old names come from the published
  change list (``yidi/data/division_history.csv``). A bare short name that is also a district elsewhere (朝阳)
  stays ambiguous unless a following name decides it (朝阳双塔区, 西安长安区).

Speed: the work is done once per distinct address (rows are factorised first), with a prefix
dictionary over the division names (longest match at a position, O(address length)).
"""
