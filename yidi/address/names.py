"""The names an address may use besides the official division names: abbreviations, pinyin, WooCommerce state
codes, foreign countries, platform fillers; and the character classes the reader looks at (requirement S1)."""

from __future__ import annotations

import re

CHONGQING = "500000"
SICHUAN = "510000"
MUNICIPALITIES = frozenset({"110000", "120000", "310000", "500000"})
CROSS_BORDER = frozenset({"810000", "820000", "710000"})

# WooCommerce's state codes for China (woocommerce/i18n/states.php, unchanged since WC 2.0). Hong Kong and
# Taiwan are separate WooCommerce countries (HK, TW), so they have no CN code.
WOOCOMMERCE_CN_STATES = {
    "CN1": "530000",  # Yunnan 云南
    "CN2": "110000",  # Beijing 北京
    "CN3": "120000",  # Tianjin 天津
    "CN4": "130000",  # Hebei 河北
    "CN5": "140000",  # Shanxi 山西
    "CN6": "150000",  # Inner Mongolia 内蒙古
    "CN7": "210000",  # Liaoning 辽宁
    "CN8": "220000",  # Jilin 吉林
    "CN9": "230000",  # Heilongjiang 黑龙江
    "CN10": "310000",  # Shanghai 上海
    "CN11": "320000",  # Jiangsu 江苏
    "CN12": "330000",  # Zhejiang 浙江
    "CN13": "340000",  # Anhui 安徽
    "CN14": "350000",  # Fujian 福建
    "CN15": "360000",  # Jiangxi 江西
    "CN16": "370000",  # Shandong 山东
    "CN17": "410000",  # Henan 河南
    "CN18": "420000",  # Hubei 湖北
    "CN19": "430000",  # Hunan 湖南
    "CN20": "440000",  # Guangdong 广东
    "CN21": "450000",  # Guangxi Zhuang 广西壮族
    "CN22": "460000",  # Hainan 海南
    "CN23": "500000",  # Chongqing 重庆
    "CN24": "510000",  # Sichuan 四川
    "CN25": "520000",  # Guizhou 贵州
    "CN26": "610000",  # Shaanxi 陕西
    "CN27": "620000",  # Gansu 甘肃
    "CN28": "630000",  # Qinghai 青海
    "CN29": "640000",  # Ningxia Hui 宁夏
    "CN30": "820000",  # Macau 澳门
    "CN31": "540000",  # Tibet 西藏
    "CN32": "650000",  # Xinjiang 新疆
}

# One-character abbreviations (简称), accepted only as a whole structured province field: inside free
# text they are the first character of ordinary names (渝中区, 京山市 …).
PROVINCE_ABBREVIATIONS = {
    "京": "110000", "津": "120000", "冀": "130000", "晋": "140000", "蒙": "150000", "辽": "210000",
    "吉": "220000", "黑": "230000", "沪": "310000", "苏": "320000", "浙": "330000", "皖": "340000",
    "闽": "350000", "赣": "360000", "鲁": "370000", "豫": "410000", "鄂": "420000", "湘": "430000",
    "粤": "440000", "桂": "450000", "琼": "460000", "渝": "500000", "川": "510000", "蜀": "510000",
    "黔": "520000", "贵": "520000", "滇": "530000", "云": "530000", "藏": "540000", "陕": "610000",
    "秦": "610000", "甘": "620000", "陇": "620000", "青": "630000", "宁": "640000", "新": "650000",
    "台": "710000", "港": "810000", "澳": "820000",
}

# Hanyu pinyin / English names of the provinces (and a few big cities), for Latin-script addresses.
PINYIN_PLACES = {
    "beijing": "110000", "tianjin": "120000", "hebei": "130000", "shanxi": "140000",
    "inner mongolia": "150000", "nei mongol": "150000", "neimenggu": "150000", "liaoning": "210000",
    "jilin": "220000", "heilongjiang": "230000", "shanghai": "310000", "jiangsu": "320000",
    "zhejiang": "330000", "anhui": "340000", "fujian": "350000", "jiangxi": "360000",
    "shandong": "370000", "henan": "410000", "hubei": "420000", "hunan": "430000",
    "guangdong": "440000", "guangxi": "450000", "hainan": "460000", "chongqing": "500000",
    "chungking": "500000", "sichuan": "510000", "guizhou": "520000", "yunnan": "530000",
    "tibet": "540000", "xizang": "540000", "shaanxi": "610000", "gansu": "620000", "qinghai": "630000",
    "ningxia": "640000", "xinjiang": "650000", "taiwan": "710000", "hong kong": "810000",
    "hongkong": "810000", "macau": "820000", "macao": "820000",
    "guangzhou": "440100", "shenzhen": "440300", "chengdu": "510100", "hangzhou": "330100",
    "wuhan": "420100", "nanjing": "320100", "suzhou": "320500", "xi'an": "610100", "xian": "610100",
    "changsha": "430100", "kunming": "530100", "guiyang": "520100",
}

# Foreign countries, as written in Chinese and in English. Matched at the start of Chinese text, or as
# a word anywhere in Latin text.
FOREIGN_COUNTRIES_ZH = {
    "日本": "日本", "日本国": "日本", "韩国": "韩国", "大韩民国": "韩国", "朝鲜": "朝鲜", "美国": "美国",
    "美利坚合众国": "美国", "英国": "英国", "法国": "法国", "德国": "德国", "意大利": "意大利",
    "西班牙": "西班牙", "葡萄牙": "葡萄牙", "荷兰": "荷兰", "比利时": "比利时", "瑞士": "瑞士",
    "瑞典": "瑞典", "挪威": "挪威", "丹麦": "丹麦", "芬兰": "芬兰", "爱尔兰": "爱尔兰", "奥地利": "奥地利",
    "希腊": "希腊", "波兰": "波兰", "捷克": "捷克", "匈牙利": "匈牙利", "俄罗斯": "俄罗斯",
    "乌克兰": "乌克兰", "加拿大": "加拿大", "墨西哥": "墨西哥", "巴西": "巴西", "阿根廷": "阿根廷",
    "智利": "智利", "秘鲁": "秘鲁", "澳大利亚": "澳大利亚", "澳洲": "澳大利亚", "新西兰": "新西兰",
    "新加坡": "新加坡", "马来西亚": "马来西亚", "泰国": "泰国", "越南": "越南", "老挝": "老挝",
    "柬埔寨": "柬埔寨", "缅甸": "缅甸", "菲律宾": "菲律宾", "印度尼西亚": "印度尼西亚", "印尼": "印度尼西亚",
    "印度": "印度", "巴基斯坦": "巴基斯坦", "孟加拉国": "孟加拉国", "尼泊尔": "尼泊尔",
    "斯里兰卡": "斯里兰卡", "蒙古国": "蒙古国", "哈萨克斯坦": "哈萨克斯坦", "吉尔吉斯斯坦": "吉尔吉斯斯坦",
    "乌兹别克斯坦": "乌兹别克斯坦", "土耳其": "土耳其", "伊朗": "伊朗", "以色列": "以色列",
    "沙特阿拉伯": "沙特阿拉伯", "沙特": "沙特阿拉伯", "阿联酋": "阿联酋", "阿拉伯联合酋长国": "阿联酋",
    "卡塔尔": "卡塔尔", "埃及": "埃及", "南非": "南非", "尼日利亚": "尼日利亚", "肯尼亚": "肯尼亚",
    "埃塞俄比亚": "埃塞俄比亚",
}
FOREIGN_COUNTRIES_EN = {
    "japan": "日本", "korea": "韩国", "south korea": "韩国", "republic of korea": "韩国",
    "united states": "美国", "united states of america": "美国", "usa": "美国", "u.s.a.": "美国",
    "america": "美国", "united kingdom": "英国", "uk": "英国", "england": "英国", "great britain": "英国",
    "france": "法国", "germany": "德国", "deutschland": "德国", "italy": "意大利", "spain": "西班牙",
    "portugal": "葡萄牙", "netherlands": "荷兰", "belgium": "比利时", "switzerland": "瑞士",
    "sweden": "瑞典", "norway": "挪威", "denmark": "丹麦", "finland": "芬兰", "ireland": "爱尔兰",
    "austria": "奥地利", "greece": "希腊", "poland": "波兰", "russia": "俄罗斯", "ukraine": "乌克兰",
    "canada": "加拿大", "mexico": "墨西哥", "brazil": "巴西", "argentina": "阿根廷", "chile": "智利",
    "australia": "澳大利亚", "new zealand": "新西兰", "singapore": "新加坡", "malaysia": "马来西亚",
    "thailand": "泰国", "vietnam": "越南", "viet nam": "越南", "laos": "老挝", "cambodia": "柬埔寨",
    "myanmar": "缅甸", "philippines": "菲律宾", "indonesia": "印度尼西亚", "india": "印度",
    "pakistan": "巴基斯坦", "bangladesh": "孟加拉国", "nepal": "尼泊尔", "sri lanka": "斯里兰卡",
    "mongolia": "蒙古国", "kazakhstan": "哈萨克斯坦", "turkey": "土耳其", "iran": "伊朗",
    "israel": "以色列", "saudi arabia": "沙特阿拉伯", "uae": "阿联酋", "united arab emirates": "阿联酋",
    "qatar": "卡塔尔", "egypt": "埃及", "south africa": "南非", "nigeria": "尼日利亚", "kenya": "肯尼亚",
}
# Functional areas that administer whole counties: a county named after the area is read as the district
# (雄安新区 manages 雄县, 容城县 and 安新县 of 保定市).
AREA_COUNTIES = {"133100": frozenset({"130638", "130629", "130632"})}
# Words between a Hong Kong / Macao province and the district that name no district (the three HK regions).
CROSS_BORDER_FILLERS = ("香港岛", "港岛", "九龙", "新界", "香港", "澳门半岛", "澳门")

# ISO 3166-1 alpha-2 codes of the commonest destinations, for readable notes.
ISO_COUNTRY_NAMES = {
    "JP": "日本", "KR": "韩国", "US": "美国", "GB": "英国", "FR": "法国", "DE": "德国", "IT": "意大利",
    "ES": "西班牙", "NL": "荷兰", "RU": "俄罗斯", "CA": "加拿大", "AU": "澳大利亚", "NZ": "新西兰",
    "SG": "新加坡", "MY": "马来西亚", "TH": "泰国", "VN": "越南", "PH": "菲律宾", "ID": "印度尼西亚",
    "IN": "印度", "AE": "阿联酋", "BR": "巴西", "MX": "墨西哥", "KZ": "哈萨克斯坦", "MN": "蒙古国",
}
# ISO 3166-1 alpha-2 country codes as found in WooCommerce's ``country`` field.
ISO_COUNTRY_PROVINCE = {"CN": None, "HK": "810000", "MO": "820000", "TW": "710000"}

# The municipalities' second level as platforms write it (Taobao: 重庆市/重庆市; others: 市辖区, 县, 重庆城区 …).
MUNICIPALITY_CITY_FILLERS = frozenset(
    {"市辖区", "县", "城区", "郊县", "市", "辖区", "重庆城区", "重庆郊县", "重庆郊区", "北京城区", "上海城区", "天津城区"}
)
PROVINCE_LEVEL_CITY_FILLERS = frozenset({"省直辖县级行政区划", "自治区直辖县级行政区划", "省直辖县级行政单位", "直辖县级"})

_ETHNIC = (
    "维吾尔|哈萨克|柯尔克孜|乌孜别克|塔吉克|塔塔尔|俄罗斯|鄂温克|鄂伦春|达斡尔|蒙古|朝鲜|土家|布依|"
    "哈尼|傈僳|拉祜|纳西|景颇|仫佬|毛南|仡佬|锡伯|阿昌|普米|德昂|保安|裕固|独龙|赫哲|门巴|珞巴|基诺|"
    "东乡|撒拉|高山|壮|回|藏|满|苗|彝|侗|瑶|白|傣|黎|佤|畲|水|土|羌|布朗|怒|京"
)
AUTONOMOUS = re.compile(rf"^(.{{2,}}?)(?:(?:{_ETHNIC})族?)+自治(州|县|旗)$")

# A short name followed by one of these is a street or building, not a place (长寿路, 南京东路, 朝阳公园).
STREET_NEXT_1 = frozenset("路街巷弄道村里")
STREET_NEXT_2 = frozenset(
    {"大道", "大街", "东路", "西路", "南路", "北路", "中路", "一路", "二路", "三路", "四路", "五路", "公园",
     "广场", "小区", "花园", "大厦", "机场", "中学", "小学", "大学", "医院", "宾馆", "酒店", "饭店", "商场",
     "新村", "东街", "西街", "南街", "北街", "正街", "支路", "横街", "家园", "名苑", "公寓"}
)
# A full name ending in 市/区 followed by these is part of another word (朝阳市场, 西湖区域). Not 民/长/政:
# 渝中区民族路, 江北区长安街, 渝中区政府 are real addresses in that district.
WORD_NEXT_2 = frozenset({"场", "域"})

SEPARATORS = frozenset(" \t\r\n,，、/\\|-_·.。:：;；()（）[]【】<>《》\"'`~")
LEADING_JUNK = re.compile(
    r"^(?:[\s,，、/\\|\-_·.。:：;；()（）\[\]【】<>《》\"'`~]+|中华人民共和国|中国大陆|中国|"
    r"(?:p\.?\s?r\.?\s?)?china|(?:收货|送货|配送|邮寄|寄送|详细|联系|收件|快递)?地址)+",
    re.IGNORECASE,
)
HAS_CJK = re.compile(r"[\u3400-\u9fff]")
EMPTY_WORDS = frozenset({"无", "不详", "未知", "同上", "空", "null", "none", "nan", "n/a", "na", "-", "--", "0"})
